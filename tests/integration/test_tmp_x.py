import pytest
from probes.events import TranscriptLine, DiagnosisFinished
async def test_x(postfix_world):
    for i in range(2):
        out = await postfix_world.diagnose("rate-limit")
        for t in out.of(TranscriptLine):
            print(t.purpose, t.t_ms, t.dir, t.text[:100])
        print(out.of(DiagnosisFinished))
        print(out.peer.postfix.log()[-1500:])
