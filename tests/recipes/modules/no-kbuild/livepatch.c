// no Kbuild here
