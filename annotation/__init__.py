"""The data: projects, prompts, responses, tasks, the queue, annotations, guidelines, constitutions, export."""
