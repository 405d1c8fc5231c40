"""Behaviour scenarios: given events (and deploys, direct sends, preferences), the sends expected.

A scenario is a YAML file a product manager writes; docs/scenarios.md documents every key.
`reading` reads one (every mistake reported at once, as FILE:LINE:COL); `running` runs it through
the preview (the live engine on a scratch database and a virtual clock); `comparing` pairs what
was sent with what the file expects; `report` words the difference. `engine test` and the test
suite both use them, through the names below.
"""

from .comparing import checked, compare, matches
from .model import Deploy, Direct, Expected, Match, Scenario, ScenarioError
from .reading import load_scenario, scenario_files
from .report import as_yaml, headline, report
from .running import Outcome, check, deployed, preferences_of, run_scenario, steps

__all__ = [
    "Deploy", "Direct", "Expected", "Match", "Outcome", "Scenario", "ScenarioError", "as_yaml", "check", "checked",
    "compare", "deployed", "headline", "load_scenario", "matches", "preferences_of", "report", "run_scenario",
    "scenario_files", "steps",
]
