"""One source of truth per experiment: the numbers a config expects (reproduce/experiments/) are
the rows of the paper's tables (reproduce/reporting/paper_data, results/paper), value for value.

Tied elsewhere: the nets registry (test_experiments.test_names_match_nets, ..._runs_on_net_inputs),
the Makefile's chains (test_plan.test_dependencies_are_the_makefiles_chains, test_slurm.
test_init_files_are_the_makefiles), the default --init (derived from each config's `init`).
"""
from __future__ import annotations

import pytest

from reproduce import experiments
from reproduce.reporting.paper import load_paper_tables

TABLES = load_paper_tables()


def table_numbers() -> dict[tuple[str, str, str, str, str], tuple[float, bool]]:
    """(table id, table source, experiment, split, metric) -> (value as printed, whether UNVERIFIED), for
    every number a table compares with one of our experiments (label columns other than the
    class count's 59 have no experiment)."""
    out = {}
    for t in TABLES:
        for row in t.rows:
            if row.experiment not in experiments.names():
                continue
            for col in t.columns:
                value = row.values.get(col.name)
                if col.metric is None or col.compare != "tolerance" or value is None:
                    continue
                split = col.split or row.split
                out[(t.id, t.source, row.experiment, split, col.metric)] = (value, row.is_unverified(col.name))
    return out


NUMBERS = table_numbers()
SOURCES = {t.source for t in TABLES}  # CVPR, PAMI, REPO, WK


def _expected():
    for e in experiments.all_experiments():
        for key, exp in e.paper.items():
            yield e.name, key, exp


@pytest.mark.parametrize("name,key,exp", list(_expected()), ids=lambda v: v if isinstance(v, str) else "")
def test_every_expected_number_is_a_paper_table_row(name, key, exp):
    sources = [s for s in SOURCES if s in exp.source.replace("README.md", "").split()] or \
              [s for s in SOURCES if exp.source.startswith(s)]
    assert sources, f"{name} {key}: source {exp.source!r} names none of the tables' sources {sorted(SOURCES)}"
    for metric, value in exp.scores.items():
        hits = [v for k, v in NUMBERS.items() if k[1] in sources and k[2:] == (name, exp.split, metric)]
        assert hits, f"{name} {key}: {metric} {value} on {exp.split} is in no {sources} table row"
        assert any(v == value for v, _ in hits), f"{name} {key}: {metric} {value}, the tables say {hits}"
        assert any(u == exp.unverified for v, u in hits if v == value), \
            f"{name} {key}: UNVERIFIED {exp.unverified} in the config, not so in the table"


def test_every_compared_table_number_is_expected_by_its_config():
    missing = []
    for (table, source, name, split, metric), (value, _) in NUMBERS.items():
        configs = [x for x in experiments.get(name).paper.values()
                   if x.split == split and x.scores.get(metric) == value and source in x.source.split()
                   or (x.split == split and x.scores.get(metric) == value and x.source.startswith(source))]
        if not configs:
            missing.append(f"{table} {name} {split} {metric} {value}")
    assert not missing, f"table numbers no config expects: {missing}"
