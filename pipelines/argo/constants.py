"""Names shared by the Argo compiler, the step pods and the CLI (no imports: safe anywhere)."""

# The HTML report the Argo UI shows for a step (argo.ui_report_steps, by default the judge): the step
# copies its report to the path in this environment variable when the variable is set. The template
# declares that path as an un-archived output artifact, which the UI renders.
UI_REPORT_PATH = "/tmp/eurolora/ui/report.html"
UI_REPORT_ARTIFACT = "html-report"

# Hera's runner writes each output parameter to <dir>/parameters/<name>.
OUTPUTS_DIR = "/tmp/hera-outputs"
SCRATCH_DIR = "/scratch"
MEMO_KEY_PATH = "/tmp/eurolora/memo-key"
MEMO_KEY_PARAM = "memo-key"

# Labels and annotations (the Argo UI shows title and description in the workflow list).
LABEL_PREFIX = "eurolora.io"
TITLE_ANNOTATION = "workflows.argoproj.io/title"
DESCRIPTION_ANNOTATION = "workflows.argoproj.io/description"
PART_OF_LABEL = "app.kubernetes.io/part-of"
PART_OF = "eurolora"
