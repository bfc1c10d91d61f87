"""The native decode engine: a serving forward for the Llama, Mistral, Qwen2/3, Phi-3 and
Gemma 1/2/3 families on the mapped backbone weights, with unmerged LoRA, a preallocated KV
cache and a batched decode loop. peft (the general path) stays the reference of
correctness and serves whatever this path cannot compute exactly (see `choose`)."""
