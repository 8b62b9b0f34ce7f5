"""One module per pipeline stage, in the order data flows through them."""
