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

TEXT_FIELDS = (QUESTION, TRAJECTORY, RESPONSE, REFERENCE_ANSWER, SOURCE)
STEP_FIELDS = (TRAJECTORY_STEPS, RESPONSE_STEPS)
CANONICAL = (ID, *TEXT_FIELDS, *STEP_FIELDS)
REQUIRED = (QUESTION, RESPONSE)

CANONICAL_TYPES: dict[str, pa.DataType] = {
    ID: pa.string(),
    QUESTION: pa.string(),
    TRAJECTORY: pa.string(),
    RESPONSE: pa.string(),
    REFERENCE_ANSWER: pa.string(),
    SOURCE: pa.string(),
    TRAJECTORY_STEPS: pa.list_(pa.string()),
    RESPONSE_STEPS: pa.list_(pa.string()),
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
