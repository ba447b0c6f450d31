"""Task models built on the rs-lite encoder: captioning and visual question answering."""
