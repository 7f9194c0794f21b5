"""Files that are not ours, read on the ground floor: GGUF headers (:mod:`.gguf`) and Hugging Face
checkpoint folders (:mod:`.checkpoints`). The store and the engines both use them; nothing here
imports the store, the engines or the scheduler."""
