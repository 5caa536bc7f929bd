"""Dataset readers that return Caffe-ready arrays, as the reference's Python data layers do."""
