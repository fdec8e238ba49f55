// lint corpus module source next to its recipe (never built)
