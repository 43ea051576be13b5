"""Runs one DAG of a folder once with `dag.test()` (Airflow 3.3: every task
in this process, no scheduler, no executor) and prints, as the last line
of stdout, one JSON object for tests/it/airflow_run.rs: the run's state,
each task's state, and the run's start (the DAG's insert_date comes from
it). AIRFLOW_HOME must hold a migrated metadata database, and
AIRFLOW__CORE__DAGS_FOLDER must be the folder.

usage: python airflow_run.py DAG_FOLDER DAG_ID
"""

import json
import sys

from airflow.dag_processing.dagbag import DagBag
from airflow.models.dagrun import DagRun
from airflow.utils.session import create_session


def main(folder, dag_id):
    bag = DagBag(dag_folder=folder)
    if bag.import_errors:
        print(json.dumps({"import_errors": {str(k): v for k, v in bag.import_errors.items()}}))
        return 1
    run = bag.get_dag(dag_id).test()
    with create_session() as session:
        run = session.query(DagRun).filter_by(dag_id=dag_id, run_id=run.run_id).one()
        tasks = {ti.task_id: str(ti.state) for ti in run.get_task_instances(session=session)}
        out = {
            "state": str(run.state),
            "tasks": tasks,
            "start_date": run.start_date.isoformat() if run.start_date else None,
        }
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
