"""kubetune trainer: validates datasets, fine-tunes models and publishes them."""
