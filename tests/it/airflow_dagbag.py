"""Loads a DAG folder with Airflow's DagBag and prints, as the last line of
stdout, one JSON object for tests/it/airflow.rs to assert on: the import
errors, and per DAG its schedule and per task its type, upstream task ids,
trigger rule and the arguments the test checks. The request bodies are
also built into the client libraries' own messages (Dataproc's GAPIC
Cluster and Job, BigQuery's SchemaField, the Cloud SQL operators' own body
validation), so a field name the service would not know fails here.

usage: python airflow_dagbag.py DAG_FOLDER
"""

import json
import sys

from airflow.dag_processing.dagbag import DagBag


def messages(dag):
    from google.cloud.bigquery import SchemaField
    from google.cloud.dataproc_v1 import Cluster, Job

    out = {"errors": []}
    tasks = dag.task_dict
    try:
        create = tasks["create_cluster"]
        cluster = Cluster(
            project_id=create.project_id,
            cluster_name=create.cluster_name,
            config=create.cluster_config,
            labels=create.labels,
        )
        out["idle_delete_ttl"] = cluster.config.lifecycle_config.idle_delete_ttl.total_seconds()
        out["idle_delete_ttl"] = int(out["idle_delete_ttl"])
    except Exception as e:  # noqa: BLE001 - reported to the test
        out["errors"].append(f"cluster: {e!r}")
    for name in ("tokenizer", "user_behavior"):
        try:
            job = Job(tasks[name].job)
            if not job.pyspark_job.main_python_file_uri.startswith("gs://"):
                out["errors"].append(f"{name}: no script")
        except Exception as e:  # noqa: BLE001
            out["errors"].append(f"{name}: {e!r}")
    for name in ("create_load_table", "import_rows", "swap_rows", "export_purchases"):
        try:
            tasks[name]._validate_body_fields()
        except Exception as e:  # noqa: BLE001
            out["errors"].append(f"{name}: {e!r}")
    try:
        fields = [SchemaField.from_api_repr(f) for f in tasks["load_warehouse"].schema_fields]
        amount = next(f for f in fields if f.name == "amount_spent")
        out["amount_spent"] = amount.to_api_repr()
    except Exception as e:  # noqa: BLE001
        out["errors"].append(f"schema: {e!r}")
    return out


def main():
    bag = DagBag(dag_folder=sys.argv[1])
    report = {"import_errors": {k: str(v) for k, v in bag.import_errors.items()}, "dags": {}}
    for dag_id, dag in bag.dags.items():
        tasks = {}
        for task in dag.tasks:
            info = {
                "type": type(task).__name__,
                "upstream": sorted(task.upstream_task_ids),
                "trigger_rule": str(task.trigger_rule.value),
            }
            for attr in ("delete_on_error", "use_if_exists", "write_disposition", "location"):
                if hasattr(task, attr):
                    info[attr] = getattr(task, attr)
            tasks[task.task_id] = info
        schedule = dag.schedule if isinstance(dag.schedule, str) or dag.schedule is None else repr(dag.schedule)
        report["dags"][dag_id] = {"schedule": schedule, "tasks": tasks, "messages": messages(dag)}
    print(json.dumps(report, default=str))


if __name__ == "__main__":
    main()
