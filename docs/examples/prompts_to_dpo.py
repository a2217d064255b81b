# %% [markdown]
# # From prompts to a DPO-trained model, with the Python client only
#
# One loop of Quorum, driven from a script or a notebook (the `# %%` cells open as cells in VS Code and in
# Jupyter through jupytext):
#
# 1. create a project and push prompts;
# 2. a registered model generates two candidates per prompt, which become pairwise tasks;
# 3. the tasks are labelled (here by a stand-in rule, so the example runs unattended; in practice your
#    annotators label them in the web UI, and this script waits for them);
# 4. a preference snapshot is written, hashed, and loaded as a `datasets.Dataset`;
# 5. DPO trains the model on that snapshot, and the trained model appears in the registry, ready to
#    generate the next round.
#
# Run it against a server (`make demo` serves one at http://127.0.0.1:8000 with SmolLM2 registered):
#
#     python docs/examples/prompts_to_dpo.py --url http://127.0.0.1:8000 --username admin --password ...
#
# The user must be staff (to create the project). Nothing here imports Django: only `quorum_client`.
# The test suite runs this file against a live test server with a tiny model (tests/client/test_docs.py).

# %%
import argparse
import json
import os

from quorum_client import Client

parser = argparse.ArgumentParser(description="Prompts to a DPO-trained model through the Quorum client.")
parser.add_argument("--url", default=os.environ.get("QUORUM_URL", "http://127.0.0.1:8000"))
parser.add_argument("--token", default=os.environ.get("QUORUM_TOKEN"))
parser.add_argument("--username", default=os.environ.get("QUORUM_USERNAME"))
parser.add_argument("--password", default=os.environ.get("QUORUM_PASSWORD"))
parser.add_argument("--project", default="dpo-example")
parser.add_argument("--model", default="SmolLM2-135M-Instruct", help="a registered model with local weights")
parser.add_argument("--max-new-tokens", type=int, default=48)
parser.add_argument("--hyperparameters", default='{"max_steps": 10, "batch_size": 2, "max_length": 256}',
                    help="DPO hyperparameters as JSON (see the training run form for all of them)")
args, _ = parser.parse_known_args()  # known args only: notebooks pass their own

# %% [markdown]
# ## Connect
# A token from `quorum login` (or the environment) works as well as a username and password.

# %%
if args.token:
    client = Client(args.url, token=args.token)
else:
    client = Client.login(args.url, args.username, args.password)
print(client, "models:", [m.name for m in client.models()])

# %% [markdown]
# ## 1. A project and its prompts
# One annotation per task is enough for this example. Pushing the same prompts again changes nothing:
# prompts are keyed by their content.

# %%
project = args.project
if project not in {p.slug for p in client.projects()}:
    client.create_project("DPO example", project, required_annotations=1,
                          description="Prompts to a DPO-trained model, from docs/examples/prompts_to_dpo.py")

prompts = [
    "Give a one-word synonym for 'happy'.",
    "What is the capital of France?",
    "Name a prime number greater than 10.",
    "Say hello in Spanish.",
    "What colour is a clear daytime sky?",
    "How many legs does a spider have?",
    "Give an antonym of 'cold'.",
    "What is 3 times 4?",
]
report = client.push_prompts(project, [{"prompt": p, "external_id": f"ex-{i}"} for i, p in enumerate(prompts)])
print(f"prompts: {report.prompts_created} new, {report.prompts_existing} already there")

# %% [markdown]
# ## 2. Candidates from a model
# Two samples per prompt become one pairwise task each. `wait()` polls the job (with a progress bar in a
# terminal or notebook) and returns its final status.

# %%
job = client.generate(project, args.model, n=2, task_kind="pairwise",
                      sampling={"max_new_tokens": args.max_new_tokens, "temperature": 1.0},
                      prompt_filter={"without_model_responses": True})
status = job.wait()
print(f"generation {job.id}: {status}, {job.info.done}/{job.info.total} samples, {job.info.tasks_created} tasks")
assert status == "succeeded", job.info.error

# %% [markdown]
# ## 3. Labels
# The queue hands out one task at a time. A stand-in rule labels here (prefer the shorter answer): replace
# this cell with your annotators, then read their work back as a DataFrame.

# %%
labelled = 0
while (task := client.next_task(project)) is not None:
    first, second = task.responses
    choice = "A" if len(first["content"]) <= len(second["content"]) else "B"
    client.submit(task, {"choice": choice, "strength": 1}, rationale="shorter is better")
    labelled += 1
print(f"labelled {labelled} tasks")

annotations = client.annotations_df(project)
print(annotations[["task", "author", "payload.choice"]].head())

# %% [markdown]
# ## 4. A preference snapshot, as a `datasets.Dataset`
# The snapshot is immutable and hashed; the download is checked against its sha256.

# %%
snapshot = client.create_snapshot(project, "preference")
dataset = client.snapshot_dataset(project, snapshot)
print(f"snapshot {snapshot.id}: {snapshot.row_count} rows, sha256 {snapshot.sha256[:12]}")
print(dataset)
assert len(dataset) == snapshot.row_count > 0

# %% [markdown]
# ## 5. DPO
# The run names the snapshot by its sha256; the server checks the hyperparameters with the trainer's own config
# before queueing it.

# %%
run = client.train(project, method="dpo", base_model=args.model, snapshot=snapshot.sha256,
                   hyperparameters=json.loads(args.hyperparameters))
status = run.wait()
print(f"training run {run.id}: {status} after {run.info.step} steps")
assert status == "succeeded", run.info.error

# %% [markdown]
# ## The trained model
# It is in the registry with its lineage, and can generate the next round:
# `client.generate(project, trained.name, n=2)`.

# %%
trained = client.model(run.info.output_model)
print(f"trained model: {trained.name} (from {trained.base_model}; lineage {' <- '.join(trained.lineage)})")
print(json.dumps({"snapshot": snapshot.sha256, "run": run.id, "model": trained.name}))
