# Recovery fine-tuning (LoRA) rules: see issue #4; filled in with the RFT stage.
