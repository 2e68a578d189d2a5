"""Image folders for super-resolution: files of every format read at their own bit depth, and the embedded skimage
set."""
