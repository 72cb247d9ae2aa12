"""Audio and text become discrete ids: text, semantic and acoustic tokenizers, and token shards.

A token id is born here. Each tokenizer is a folder with everything needed to reproduce its ids; its
identity is a content hash of that folder (`identity.folder_hash`), stored with every shard.
"""
