"""Physical backups (pgBackRest, Barman) restored into an ephemeral cluster and recovered to a target.

One module per tool behind the ``PhysicalSource`` protocol (source.py); the
drill (drill.py) runs locate -> check archive -> restore -> start+recover ->
safety assert -> verify ladder per database -> teardown, whatever the tool.
Nothing here imports Airflow.
"""
