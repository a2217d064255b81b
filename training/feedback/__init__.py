"""AI feedback governed by a project's constitution: critique → revision chains (supervised CAI), an AI judge
that labels tasks per principle from next-token probabilities (RL-CAI), the AI rater that writes those labels,
and how far the AI agrees with people.

`judge` and `prompts` are plain Python (no Django) over any backend of `training.backends`; `chains`, `rater`,
`agreement` and `jobs` are the Django services around them.
"""
