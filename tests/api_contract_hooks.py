"""schemathesis hooks for tests/api-contract.sh.

The API documents a script's source as a string of format `avap-script`
(AVAP text that parses; no JSON Schema can say more). For that format the
contract generates small valid scripts, so that the fuzzer's "valid" requests
are valid to the API as well, and a warning that generated data was mostly
rejected means a schema looser than the API, not random text that was never
a script. Invalid scripts still come from the negative phases.
"""

import schemathesis
from hypothesis import strategies as st

NAMES = st.sampled_from(["a", "b", "total", "msg", "n1", "user_name"])
TEXT = st.text(alphabet="abcdefghijklmnopqrstuvwxyz ABC0123456789.-", max_size=16)
VALUES = st.one_of(
    st.integers(min_value=-(10**9), max_value=10**9).map(str),
    st.floats(min_value=-1e6, max_value=1e6, allow_nan=False, allow_infinity=False).map(repr),
    TEXT.map(lambda s: '"' + s + '"'),
    st.sampled_from(["True", "False", "None", "[1, 2, 3]", '{"k": 1}']),
)


@st.composite
def avap_scripts(draw):
    lines = []
    assigned = []
    for _ in range(draw(st.integers(min_value=1, max_value=6))):
        name, value = draw(NAMES), draw(VALUES)
        form = draw(st.sampled_from(["addVar", "assign", "sum"]))
        if form == "addVar":
            lines.append(f"addVar({name}, {value})")
        elif form == "assign":
            lines.append(f"{name} = {value}")
        else:
            x, y = draw(st.integers(-1000, 1000)), draw(st.integers(-1000, 1000))
            lines.append(f"{name} = {x} + {y} * 2")
        assigned.append(name)
    lines.append(f"addResult({draw(st.sampled_from(assigned))})")
    return "\n".join(lines)


schemathesis.openapi.format("avap-script", avap_scripts())
