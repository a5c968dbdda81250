"""What the Prefect flows run: plain functions that stage, check and commit change sets, refresh and
maintain datasets (testable without Prefect), and the thin Prefect tasks wrapping them (`prefect_tasks`).

Tasks hand each other staged file directories, snapshot ids and small summaries, never whole tables.
"""
