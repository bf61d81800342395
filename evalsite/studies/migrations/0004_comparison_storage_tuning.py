"""Every rater cycle updates a comparison's counters twice; leave room for HOT updates and vacuum
the table often, or dead rows double PostgreSQL's CPU per cycle within seconds (measured with
benchmarks/rater_loop.py). PostgreSQL only; other databases need nothing."""

from django.db import migrations

TUNE = (
    "ALTER TABLE studies_comparison SET (fillfactor = 70, autovacuum_vacuum_scale_factor = 0, "
    "autovacuum_vacuum_threshold = 500, autovacuum_analyze_scale_factor = 0.05)"
)
RESET = (
    "ALTER TABLE studies_comparison RESET (fillfactor, autovacuum_vacuum_scale_factor, "
    "autovacuum_vacuum_threshold, autovacuum_analyze_scale_factor)"
)


def tune(apps, schema_editor) -> None:
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(TUNE)


def reset(apps, schema_editor) -> None:
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(RESET)


class Migration(migrations.Migration):
    dependencies = [("studies", "0003_judge_role")]
    operations = [migrations.RunPython(tune, reset)]
