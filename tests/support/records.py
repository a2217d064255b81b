"""Records shaped as public datasets ship them, for import and export tests."""

# Two HH-RLHF pairs: the dialogue is in both texts, with no strength stated.
HH = [
    {
        "chosen": "\n\nHuman: What is the capital of France?\n\nAssistant: Paris.",
        "rejected": "\n\nHuman: What is the capital of France?\n\nAssistant: Lyon.",
    },
    {
        "chosen": "\n\nHuman: Name a colour.\n\nAssistant: Blue.",
        "rejected": "\n\nHuman: Name a colour.\n\nAssistant: Seven.",
    },
]
