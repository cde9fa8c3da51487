"""Networks and the derivative engines that differentiate them."""
