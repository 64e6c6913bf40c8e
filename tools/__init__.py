"""Development tools, apart from the product: the local TF-Serving-compatible backend, the demo-model
builder, the benchmark and the ``make run`` launcher. The wheel and the product's imports never reach them."""
