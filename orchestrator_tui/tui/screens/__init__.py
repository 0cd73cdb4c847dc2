"""Modal screens, by family.

- :mod:`.dialogs`: confirmations, one line of text, picking a command;
- :mod:`.answering`: answering a question request;
- :mod:`.pool`: the pool's standing state: attached front ends, rules, the approval policy;
- :mod:`.info`: help and the decision log;
- :mod:`.table`: the table dialog the pool screens and the log share.

Text from models, agents and projects (questions and options, command names, client names,
patterns, titles) is shown through :func:`shown` / :func:`visible`: control characters appear as
escapes, and it is never read as markup. What is sent back (an option's label, a command's
name, a rule's pattern) is the exact original.
"""

from orchestrator_tui.tui.screens.answering import QuestionDraft, QuestionResult, QuestionScreen
from orchestrator_tui.tui.screens.dialogs import CommandPickerScreen, ConfirmScreen, TextPromptScreen
from orchestrator_tui.tui.screens.info import DecisionLogScreen, HelpScreen
from orchestrator_tui.tui.screens.pool import MakeRuleScreen, PolicyScreen, RuleDraft, RulesScreen, WorkersScreen
from orchestrator_tui.tui.screens.table import TableScreen

__all__ = [
    "CommandPickerScreen",
    "ConfirmScreen",
    "DecisionLogScreen",
    "HelpScreen",
    "MakeRuleScreen",
    "PolicyScreen",
    "QuestionDraft",
    "QuestionResult",
    "QuestionScreen",
    "RuleDraft",
    "RulesScreen",
    "TableScreen",
    "TextPromptScreen",
    "WorkersScreen",
]
