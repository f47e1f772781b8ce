"""What training and decoding read: the fbank definition, Lhotse datasets, the sampler, the cut filter, the tokenizer."""
