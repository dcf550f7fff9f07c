"""facelabel's model contract, shared by `trainer/` and `pipeline/`; imports nothing else of ours.

- `contract`: class names, input shape, image extensions, signature names, default model location.
- `preprocess`: the one function from image bytes to the network input.
- `network`: the Keras network builder.
- `metadata`: what is written beside an exported model and read back.
- `saved`: loading an exported SavedModel for inference.
"""
