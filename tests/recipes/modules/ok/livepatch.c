// lint corpus module source (never built)
