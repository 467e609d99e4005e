"""Encrypted blob storage (attachments, raw originals, exports, quarantined mail), chunked, under the owner's data key."""
