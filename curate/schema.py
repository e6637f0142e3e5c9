"""The canonical trace columns every stage reads and writes (see docs/DESIGN.md, data contract)."""

import pyarrow as pa

ID = "id"
QUESTION = "question"
TRAJECTORY = "trajectory"
RESPONSE = "response"
REFERENCE_ANSWER = "reference_answer"
SOURCE = "source"
TRAJECTORY_STEPS = "trajectory_steps"
RESPONSE_STEPS = "response_steps"
# The conversation before the scored assistant turn, when there is more to it than the question:
# a system prompt, earlier turns, tool calls and tool results. Every message in order, the last
# user message (= `question`) included; null for a single-turn row.
CONTEXT = "context"
# Tool definitions (a JSON list of function schemas, as chat templates take them), when the
# source gives them; exported beside the messages.
TOOLS = "tools"

TEXT_FIELDS = (QUESTION, TRAJECTORY, RESPONSE, REFERENCE_ANSWER, SOURCE)
STEP_FIELDS = (TRAJECTORY_STEPS, RESPONSE_STEPS)
CANONICAL = (ID, *TEXT_FIELDS, *STEP_FIELDS, CONTEXT)
REQUIRED = (QUESTION, RESPONSE)

# One message of a context: role (system, user, assistant, tool), its text (an assistant's tool
# calls written inline as <tool_call>…</tool_call>, as Qwen and LLaMA-Factory render them), and
# an earlier assistant turn's own thinking (kept, not rendered by default).
MESSAGE_TYPE = pa.struct([("role", pa.string()), ("content", pa.string()),
                          ("reasoning", pa.string())])
CONTEXT_TYPE = pa.list_(MESSAGE_TYPE)

CANONICAL_TYPES: dict[str, pa.DataType] = {
    ID: pa.string(),
    QUESTION: pa.string(),
    TRAJECTORY: pa.string(),
    RESPONSE: pa.string(),
    REFERENCE_ANSWER: pa.string(),
    SOURCE: pa.string(),
    TRAJECTORY_STEPS: pa.list_(pa.string()),
    RESPONSE_STEPS: pa.list_(pa.string()),
    CONTEXT: CONTEXT_TYPE,
}

# Columns of the _dropped/ tables. `drop_value` holds the value that decided, as text.
DROP_REASON = "drop_reason"
DROP_VALUE = "drop_value"
DROP_FILE = "input_file"
DROP_ROW = "input_row"
DROPPED_SCHEMA = pa.schema(
    [(ID, pa.string()), (DROP_REASON, pa.string()), (DROP_VALUE, pa.string()),
     (DROP_FILE, pa.string()), (DROP_ROW, pa.int64())]
)
