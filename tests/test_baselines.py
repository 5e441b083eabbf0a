"""Tests of the baselines: parsers, bandit, control flow with a scripted optimiser LLM and a
fake scorer, the OpenAI-compatible engine against a real loopback HTTP server, and every method
end to end on the real smollm2-135m with real data and a tiny budget."""

from __future__ import annotations

import http.server
import json
import random
import threading
import time
import zlib
from contextlib import contextmanager

import pytest
import torch

import baselines as B
from baselines import prompts as P
from baselines.common import UCBBandit
from greater.cost import CostMeter
from greater.engines import EngineError, OpenAIEngine
from greater.methods import UnknownMethodError, get_method, method_names
from greater.evaluate import ZERO_SHOT_COT_PROMPT, ExampleRecord
from greater.lm.model import PromptError
from greater.result import OptimizationResult
from greater.tasks import load_task

TASK = "bbh/boolean_expressions"


# ----------------------------------------------------------------------------- doubles
class FakeLM:
    """What a baseline needs from the task model when scoring is injected."""

    name = "fake-lm"
    dtype = torch.float32
    device = torch.device("cpu")
    chat_date = "fixed"

    def __init__(self) -> None:
        self.meter = CostMeter()

    def prompt_ids(self, prompt: str) -> list[int]:
        if not prompt or not prompt.strip():
            raise PromptError("the prompt is empty")
        words = prompt.split()
        if len(words) > 256:
            raise PromptError("too long")
        return list(range(len(words)))


def fake_scorer(prompt: str, examples) -> list[ExampleRecord]:
    """GOOD prompts are always right, BAD ones never, others right exactly on "True" items."""
    out = []
    for ex in examples:
        if "GOOD" in prompt:
            correct = True
        elif "BAD" in prompt:
            correct = False
        else:
            correct = ex.target == "True"
        answer = ex.target if correct else ("False" if ex.target == "True" else "True")
        out.append(ExampleRecord(input=ex.input, reasoning="r", response=f"r ${answer}",
                                 answer=answer, gold=ex.target, correct=correct,
                                 stopped_by="eos"))
    return out


class ScriptedEngine:
    """A ChatEngine whose reply is ``script(message)``; records every message it got."""

    name = "scripted"

    def __init__(self, script) -> None:
        self.script = script
        self.meter = CostMeter()
        self.messages: list[str] = []

    def complete(self, messages, *, max_new_tokens, temperature, seed):
        assert isinstance(seed, int)
        self.messages.extend(messages)
        self.meter.add_llm_calls(len(messages))
        return [self.script(m) for m in messages]


@pytest.fixture(scope="module")
def task(data_dir):
    return load_task(TASK, data_dir)


def roundtrip(result: OptimizationResult) -> None:
    data = json.loads(json.dumps(result.to_dict()))
    assert OptimizationResult.from_dict(data) == result


# ----------------------------------------------------------------------------- registry/config
def optimize(name, *args, **kwargs):
    return get_method(name).optimize(*args, **kwargs)


def test_registry_lists_every_method():
    assert {"greater", "zscot", "ape", "apo", "textgrad", "gcg"} <= set(method_names())
    for name in method_names():
        spec = get_method(name)
        assert spec.name == name and spec.config_cls().to_dict()["seed"] == 0
        assert spec.summary
    with pytest.raises(UnknownMethodError, match="did you mean 'textgrad'"):
        get_method("textgrd")
    with pytest.raises(ValueError, match="valid methods: .*ape, apo"):
        get_method("no-such-method")


@pytest.mark.parametrize("cls, kwargs", [
    (B.APEConfig, {"selection": "bandit"}), (B.APEConfig, {"n_candidates": 0}),
    (B.APOConfig, {"beam_size": 0}), (B.APOConfig, {"mc_samples_per_step": -1}),
    (B.TextGradConfig, {"n_val": 0}), (B.GCGConfig, {"token_filter": "utf8"}),
    (B.GCGConfig, {"ce_temperature": 0.0}), (B.ZSCoTConfig, {"n_contenders": 2}),
    (B.APEConfig, {"n_train": 0}), (B.APOConfig, {"n_dev": 0}),
    (B.TextGradConfig, {"initial_prompt": "  "}), (B.APEConfig, {"optimizer_temperature": -1}),
    (B.GCGConfig, {"seed": True}),
])
def test_configs_are_validated(cls, kwargs):
    with pytest.raises(ValueError):
        cls(**kwargs)


def test_methods_without_optimizer_llm_refuse_one(task):
    engine = ScriptedEngine(lambda m: "")
    for name in ("greater", "zscot", "gcg"):
        with pytest.raises(ValueError, match="no optimiser LLM"):
            get_method(name).optimize(FakeLM(), task, optimizer_llm=engine, progress=False)


# ----------------------------------------------------------------------------- parsers
@pytest.mark.parametrize("reply, expected", [
    ("<prompt>Use careful steps.</prompt>", ["careful steps."]),
    ("blah <PROMPT> first </PROMPT> and <prompt>second", ["first", "second"]),
    ("1. think hard\n2) check each operator\n- ", ["think hard", "check each operator"]),
    ("", []), (None, []), ("%%%% ### ???", []), ("<prompt></prompt>", []),
    ("<prompt>" + "x" * 2000 + "</prompt>", []), ('<prompt>"Prompt: quoted"</prompt>', ["quoted"]),
])
def test_parse_prompts_never_crashes(reply, expected):
    assert P.parse_prompts(reply) == expected


def test_parse_reasons_forms():
    assert P.parse_reasons("Reason 1: too vague. Reason 2: no format\nhint") == [
        "too vague.", "no format hint"]
    assert P.parse_reasons("1. ignores 'not'\n2. wrong order") == ["ignores 'not'", "wrong order"]
    assert P.parse_reasons("") == [] and P.parse_reasons(None) == [] and P.parse_reasons("??") == []
    assert P.parse_feedback("  \n") is None and P.parse_feedback("Be precise") == "Be precise"


def test_meta_prompts_are_filled():
    msg = P.apo_gradient("think", [("q?", "reply", "True")], 2)
    assert "Use think" in msg and "Give 2 reasons" in msg and "{" not in msg
    assert "Input: a\nOutput: b" in P.ape_proposal([("a", "b")])
    assert "{" not in P.textgrad_update("p", ["f1", "f2"]) + P.resample("p")


# ----------------------------------------------------------------------------- bandit
def test_ucb_bandit_ranks_the_better_arm_and_plays_unplayed_first(task):
    examples = task.train[:20]
    truth = {"good": 0.9, "mid": 0.5, "bad": 0.1}
    rng = random.Random(0)
    plays = []

    def correct(arm, exs):
        plays.append(arm)
        # a fixed pseudo-random draw per (arm, example): independent of PYTHONHASHSEED
        return [zlib.crc32(f"{arm}|{e.input}".encode()) % 100 < truth[arm] * 100 for e in exs]

    bandit = UCBBandit(["bad", "mid", "good"], examples, correct, random.Random(1), c=0.5)
    drawn = bandit.run(rounds=6, arms_per_round=1, samples_per_round=4)
    assert plays[:3] == ["bad", "mid", "good"]  # unplayed arms first
    assert bandit.ranked()[0] == "good" and drawn == 24
    assert sum(bandit.n(a) for a in bandit.arms) == 24
    bandit.run(rounds=100, arms_per_round=3, samples_per_round=50)  # exhausts, then stops
    assert all(bandit.n(a) == 20 for a in bandit.arms)
    del rng


# ----------------------------------------------------------------------------- control flow
def small(cls, **kw):
    return cls(n_train=8, n_dev=6, n_test=4, n_contenders=3, max_new_tokens=8, **kw)


def test_ape_proposals_parse_fallbacks_and_selection(task):
    replies = iter(["garbage %%%", "", "<prompt>Use GOOD careful steps</prompt>",
                    "1. BAD list item\n2. other"])
    engine = ScriptedEngine(lambda m: next(replies))
    cfg = small(B.APEConfig, n_candidates=4, n_demos=3, seed=3)
    res = optimize("ape", FakeLM(), task, cfg, optimizer_llm=engine, progress=False,
                         scorer=fake_scorer)
    roundtrip(res)
    step = res.history[0]
    assert step.details["parse_failures"] == 2 and step.details["n_valid"] == 2
    assert res.best_prompt == "GOOD careful steps" and step.train_accuracy == 1.0
    assert res.dev_accuracy == 1.0 and res.test_accuracy == 1.0
    assert res.cost.llm_calls == 4 and res.config["optimizer_llm"] == "scripted"
    assert {c.prompt for c in res.contenders} == {ZERO_SHOT_COT_PROMPT, "GOOD careful steps",
                                                  "BAD list item"}
    # demos come from the training subsample, drawn with the seed
    assert all(m.count("Input:") == 3 for m in engine.messages)
    again = ScriptedEngine(lambda m, it=iter(["x"] * 4): next(it))
    optimize("ape", FakeLM(), task, cfg, optimizer_llm=again, progress=False, scorer=fake_scorer)
    assert again.messages == engine.messages


def test_ape_ucb_and_resampling(task):
    def script(m):
        if "variation" in m:
            return "<prompt>GOOD variant</prompt>" if "neutral" in m else "nonsense"
        return "<prompt>neutral idea</prompt>"

    engine = ScriptedEngine(script)
    cfg = small(B.APEConfig, n_candidates=3, selection="ucb", bandit_rounds=3,
                bandit_prompts_per_round=2, bandit_samples_per_round=2, resample=True,
                resample_top=2, n_variants=2)
    res = optimize("ape", FakeLM(), task, cfg, optimizer_llm=engine, progress=False,
                         scorer=fake_scorer)
    assert len(res.history) == 2
    scored = sum(s["n_scored"] for s in res.history[0].details["scores"])
    assert scored <= 3 * 2 * 2  # the bandit spent at most rounds * arms * samples
    assert res.history[1].details["parse_failures"] == 2  # the "nonsense" paraphrases
    assert res.best_prompt == "GOOD variant"


def test_apo_beam_bandit_and_fallbacks(task):
    def script(m):
        if "Give 1 reasons" in m:
            return "Reason 1: it never mentions operator precedence."
        if "improved instruction" in m:
            return "<prompt>Use GOOD precedence rules</prompt><prompt>BAD idea</prompt>"
        return "no tags at all"  # paraphrases fail to parse

    engine = ScriptedEngine(script)
    cfg = small(B.APOConfig, steps=2, beam_size=2, minibatch_size=8, n_gradients=2,
                errors_per_gradient=2, steps_per_gradient=2, mc_samples_per_step=1,
                eval_rounds=4, eval_prompts_per_round=3, samples_per_eval=8)
    res = optimize("apo", FakeLM(), task, cfg, optimizer_llm=engine, progress=False,
                         scorer=fake_scorer)
    roundtrip(res)
    first, second = res.history
    assert first.details["gradients"] == ["it never mentions operator precedence."] * 2
    assert first.details["parse_failures"] == {"gradient": 0, "edit": 0, "paraphrase": 4}
    assert [b["prompt"] for b in first.details["beam"]] == ["GOOD precedence rules",
                                                            ZERO_SHOT_COT_PROMPT]
    assert first.train_accuracy == 1.0 and first.loss == 0.0
    assert len(second.details["beam"]) <= 2
    # GOOD makes no errors: only the other beam prompt asks for gradients in round 2
    assert second.details["minibatch_errors"][0] == 0
    assert res.best_prompt == "GOOD precedence rules"


def test_apo_garbage_gradients_keep_the_beam(task):
    engine = ScriptedEngine(lambda m: "" if "reasons" in m else "<prompt>x</prompt>")
    cfg = small(B.APOConfig, steps=1, beam_size=2, n_gradients=3, eval_rounds=1,
                eval_prompts_per_round=1, samples_per_eval=2)
    res = optimize("apo", FakeLM(), task, cfg, optimizer_llm=engine, progress=False,
                         scorer=fake_scorer)
    assert res.history[0].details["parse_failures"]["gradient"] == 3
    assert res.best_prompt == ZERO_SHOT_COT_PROMPT and res.history[0].details["n_new"] == 0


def test_textgrad_rejects_rewrites_that_lower_dev_accuracy(task):
    updates = iter(["garbage without tags", "<prompt>Use BAD shortcuts</prompt>",
                    "<prompt>GOOD operator by operator</prompt>"])
    feedback = iter(["", "Mention operator precedence."] * 10)

    def script(m):
        return next(feedback) if "The reply is wrong" in m else next(updates)

    engine = ScriptedEngine(script)
    cfg = small(B.TextGradConfig, steps=4, minibatch_size=8, n_val=6)
    res = optimize("textgrad", FakeLM(), task, cfg, optimizer_llm=engine, progress=False,
                              scorer=fake_scorer)
    roundtrip(res)
    s1, s2, s3, s4 = (h.details for h in res.history)
    assert s1["parse_failures"]["update"] == 1 and not s1["accepted"]
    assert s1["parse_failures"]["feedback"] >= 1  # the empty feedback replies
    assert s2["proposal"] == "BAD shortcuts" and not s2["accepted"]
    assert s2["proposal_val_accuracy"] < s2["val_accuracy"]
    assert res.history[1].prompt == ZERO_SHOT_COT_PROMPT
    assert s3["accepted"] and res.history[2].prompt == "GOOD operator by operator"
    # a step's train accuracy is that of its own prompt: unmeasured after a rewrite
    assert res.history[1].train_accuracy == s2["minibatch_accuracy"]
    assert res.history[2].train_accuracy is None and s3["minibatch_accuracy"] is not None
    assert s4["n_wrong"] == 0 and not s4["accepted"]  # nothing to fix: no optimiser call
    assert res.best_prompt == "GOOD operator by operator"
    assert [c.prompt for c in res.contenders] == [ZERO_SHOT_COT_PROMPT, res.best_prompt]


class Interrupt(Exception):
    """Stands for a kill between two steps."""


def test_checkpoint_every_step_and_resume_gives_the_uninterrupted_result(task, tmp_path):
    """The run dies in step 3: the checkpoint holds steps 1-2 (so it is written per step), and
    resuming from it ends exactly as a run that was never interrupted."""

    def script(m):
        return "Mention operator precedence." if "wrong" in m else "<prompt>GOOD idea</prompt>"

    cfg = small(B.TextGradConfig, steps=4, minibatch_size=4, n_val=2, seed=5)
    whole = optimize("textgrad", FakeLM(), task, cfg, optimizer_llm=ScriptedEngine(script),
                     progress=False, scorer=fake_scorer)

    train = {ex.input for ex in task.train}
    minibatches = []

    def dying_scorer(prompt, examples):
        if all(ex.input in train for ex in examples):  # each step scores one minibatch
            minibatches.append(prompt)
            if len(minibatches) == 3:
                raise Interrupt
        return fake_scorer(prompt, examples)

    path = tmp_path / "run.json"
    with pytest.raises(Interrupt):
        optimize("textgrad", FakeLM(), task, cfg, optimizer_llm=ScriptedEngine(script),
                 progress=False, scorer=dying_scorer, checkpoint=path)
    partial = OptimizationResult.load(path)
    assert partial.status == "partial" and [h.step for h in partial.history] == [1, 2]
    assert partial.resume is not None and partial.resume["next_step"] == 3
    resumed = optimize("textgrad", FakeLM(), task, cfg, optimizer_llm=ScriptedEngine(script),
                       progress=False, scorer=fake_scorer, checkpoint=path)
    assert resumed.status == "done" and resumed.resume is None
    for field in ("best_prompt", "dev_accuracy", "test_accuracy", "contenders", "config"):
        assert getattr(resumed, field) == getattr(whole, field), field
    assert [(h.prompt, h.details) for h in resumed.history] == \
        [(h.prompt, h.details) for h in whole.history]
    assert OptimizationResult.load(path) == resumed
    # a finished checkpoint is returned as it is; another config is refused
    again = optimize("textgrad", FakeLM(), task, cfg, optimizer_llm=ScriptedEngine(script),
                     progress=False, scorer=fake_scorer, checkpoint=path)
    assert again == resumed
    with pytest.raises(ValueError, match="config.steps: 4 in the checkpoint, 5 now"):
        optimize("textgrad", FakeLM(), task, small(B.TextGradConfig, steps=5, minibatch_size=4,
                                                   n_val=2, seed=5),
                 optimizer_llm=ScriptedEngine(script), progress=False, scorer=fake_scorer,
                 checkpoint=path)


def test_top_k_swaps_excludes_current_and_disallowed():
    cand = torch.tensor([3, 5, 7, 9])
    allowed = torch.zeros(10, dtype=torch.bool)
    allowed[[3, 7, 9]] = True
    grad = torch.tensor([[-5.0, -4.0, -3.0, -2.0], [-1.0, -9.0, -8.0, 0.0]])
    top = B.gcg.top_k_swaps(grad, cand, allowed, [3, 7], top_k=2)
    assert top.tolist() == [[7, 9], [3, 9]]  # 5 is disallowed; 3 / 7 are current


# ----------------------------------------------------------------------------- OpenAI engine
class _Handler(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args):  # quiet
        pass

    def do_POST(self):
        server = self.server
        length = int(self.headers.get("Content-Length", 0))
        request = json.loads(self.rfile.read(length))
        server.requests.append((self.path, request))
        action = server.script.pop(0) if server.script else ("ok", "default")
        kind = action[0]
        if kind == "sleep":
            time.sleep(action[1])
            action = ("ok", action[2])
            kind = "ok"
        if kind == "ok":
            body = json.dumps({
                "id": "x", "object": "chat.completion", "created": 0, "model": request["model"],
                "choices": [{"index": 0, "finish_reason": "stop",
                             "message": {"role": "assistant", "content": action[1]}}],
                "usage": {"prompt_tokens": 11, "completion_tokens": 5, "total_tokens": 16}})
            status = 200
        elif kind == "badjson":
            body, status = "{not json", 200
        elif kind == "nochoices":
            body, status = json.dumps({"id": "x", "object": "chat.completion"}), 200
        else:  # an HTTP error status
            body, status = json.dumps({"error": {"message": "boom"}}), int(kind)
        data = body.encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        except OSError:  # the client gave up (timeout)
            pass


@contextmanager
def chat_server(script):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.daemon_threads = True
    server.script = list(script)
    server.requests = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server, f"http://127.0.0.1:{server.server_address[1]}/v1"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def api_key(monkeypatch):
    monkeypatch.setenv("TEST_LOOPBACK_KEY", "sk-test")
    return "TEST_LOOPBACK_KEY"


def engine_for(url, api_key, **kw):
    kw.setdefault("timeout", 0.5)
    return OpenAIEngine(url, "tiny-model", api_key_env=api_key, backoff=0.01, **kw)


def test_openai_engine_normal_reply(api_key):
    with chat_server([("ok", "<prompt>hello</prompt>"), ("ok", "second")]) as (server, url):
        engine = engine_for(url, api_key)
        out = engine.complete(["a", "b"], max_new_tokens=7, temperature=0.5, seed=3)
    assert out == ["<prompt>hello</prompt>", "second"]
    path, req = server.requests[0]
    assert path == "/v1/chat/completions" and req["model"] == "tiny-model"
    assert req["messages"] == [{"role": "user", "content": "a"}]
    assert req["max_tokens"] == 7 and req["seed"] == 3 and req["temperature"] == 0.5
    snap = engine.meter.snapshot()
    assert snap.llm_calls == 2 and snap.generated_tokens == 10 and snap.forward_tokens == 22
    assert engine.prompt_tokens == 22 and engine.completion_tokens == 10


def test_openai_engine_retries_a_timeout_then_succeeds(api_key):
    with chat_server([("sleep", 0.8, "late"), ("ok", "on time")]) as (server, url):
        engine = engine_for(url, api_key, timeout=0.3, max_retries=2)
        assert engine.complete(["q"], max_new_tokens=5, temperature=0, seed=None) == ["on time"]
    assert len(server.requests) == 2 and engine.meter.llm_calls == 1
    assert "seed" not in server.requests[0][1]


def test_openai_engine_gives_up_after_retries(api_key):
    script = [("sleep", 0.6, "late")] * 2
    with chat_server(script) as (server, url):
        engine = engine_for(url, api_key, timeout=0.2, max_retries=1)
        with pytest.raises(EngineError, match="no reply after 2 attempts"):
            engine.complete(["q"], max_new_tokens=5, temperature=0, seed=1)
    assert len(server.requests) == 2


def test_openai_engine_retries_server_errors(api_key):
    with chat_server([("500",), ("503",), ("ok", "fine")]) as (server, url):
        engine = engine_for(url, api_key, max_retries=2)
        assert engine.complete(["q"], max_new_tokens=5, temperature=0, seed=1) == ["fine"]
    with chat_server([("400",)]) as (server, url):  # a client error is not retried
        with pytest.raises(EngineError, match="request failed"):
            engine_for(url, api_key).complete(["q"], max_new_tokens=5, temperature=0, seed=1)
    assert len(server.requests) == 1


@pytest.mark.parametrize("kind", ["badjson", "nochoices"])
def test_openai_engine_malformed_reply_is_a_clear_error(api_key, kind):
    with chat_server([(kind,)]) as (server, url):
        with pytest.raises(EngineError, match="malformed reply"):
            engine_for(url, api_key).complete(["q"], max_new_tokens=5, temperature=0, seed=1)


def test_openai_engine_needs_its_key(monkeypatch):
    monkeypatch.delenv("NO_SUCH_KEY_VAR", raising=False)
    with pytest.raises(EngineError, match="NO_SUCH_KEY_VAR"):
        OpenAIEngine("http://127.0.0.1:9/v1", "m", api_key_env="NO_SUCH_KEY_VAR")


def test_ape_through_the_openai_engine_counts_its_cost(api_key, task):
    script = [("ok", "<prompt>GOOD from the api</prompt>"), ("ok", "not a prompt")]
    with chat_server(script) as (server, url):
        engine = engine_for(url, api_key)
        cfg = small(B.APEConfig, n_candidates=2)
        res = optimize("ape", FakeLM(), task, cfg, optimizer_llm=engine, progress=False,
                             scorer=fake_scorer)
    assert res.best_prompt == "GOOD from the api"
    assert res.history[0].details["parse_failures"] == 1
    assert res.cost.llm_calls == 2 and res.cost.generated_tokens == 10
    assert res.config["optimizer_llm"] == "tiny-model"


def test_no_secret_reaches_results_or_logs(monkeypatch, task, tmp_path, caplog):
    """The endpoint's API key is read from the environment and never written anywhere."""
    secret = "sk-" + "7f3a9c" * 6
    monkeypatch.setenv("TEST_SECRET_KEY", secret)
    caplog.set_level("DEBUG")
    script = [("ok", "<prompt>GOOD from the api</prompt>"), ("ok", "not a prompt")]
    with chat_server(script) as (server, url):
        engine = engine_for(url, "TEST_SECRET_KEY")
        path = tmp_path / "run.json"
        optimize("ape", FakeLM(), task, small(B.APEConfig, n_candidates=2), optimizer_llm=engine,
                 progress=False, scorer=fake_scorer, checkpoint=path)
    assert server.requests  # the key was used to talk to the endpoint ...
    assert secret not in path.read_text()  # ... but is neither in the result ...
    assert secret not in caplog.text  # ... nor in the logs


# ----------------------------------------------------------------------------- end to end
TINY = dict(n_train=4, n_dev=4, n_test=4, max_new_tokens=48, n_contenders=2)
LLM = dict(optimizer_max_new_tokens=64)
E2E = {
    "zscot": lambda: B.ZSCoTConfig(**{**TINY, "n_contenders": 1}),
    "ape": lambda: B.APEConfig(**TINY, **LLM, n_candidates=3, n_demos=2),
    # apo/textgrad: 8 training examples, so the minibatch holds errors (the first 4 are right)
    "apo": lambda: B.APOConfig(**{**TINY, "n_train": 8}, **LLM, steps=1, beam_size=2,
                               minibatch_size=8,
                               n_gradients=1, errors_per_gradient=2, mc_samples_per_step=1,
                               eval_rounds=1, eval_prompts_per_round=3, samples_per_eval=4),
    "textgrad": lambda: B.TextGradConfig(**{**TINY, "n_train": 8}, **LLM, steps=1,
                                         minibatch_size=8, n_val=4),
    "gcg": lambda: B.GCGConfig(**TINY, steps=1, top_k=8, search_width=8),
}


@pytest.fixture
def one_thread():
    """One torch thread: on a shared 2-core machine, 2 threads oversubscribe and run ~20x
    slower when other processes are busy (measured); restored afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def run_end_to_end(name: str, cfg, lm, task) -> OptimizationResult:
    """Run ``name`` on the real model and check what every method's result must satisfy."""
    res = get_method(name).optimize(lm, task, cfg, progress=False)
    roundtrip(res)
    assert res.method == name and res.model == lm.name and res.task == TASK
    assert res.history and res.best_prompt.strip() and res.seed == 0
    assert res.best_prompt in {c.prompt for c in res.contenders}
    assert 0.0 <= res.dev_accuracy <= 1.0 and 0.0 <= res.test_accuracy <= 1.0
    engine = {"optimizer_llm": lm.name} if get_method(name).uses_optimizer_llm else {}
    assert res.config == {**cfg.to_dict(), **engine}
    assert res.cost.forward_passes > 0 and res.cost.wall_seconds > 0
    return res


@pytest.mark.model
@pytest.mark.parametrize("name", list(E2E))
def test_end_to_end_on_smollm(name, lm16, task, one_thread):
    res = run_end_to_end(name, E2E[name](), lm16, task)
    cost = res.cost
    if name in ("ape", "apo", "textgrad"):
        assert cost.llm_calls > 0
    if name == "gcg":
        assert cost.backward_passes > 0 and res.history[0].loss is not None
        assert res.history[0].details["n_swaps"] >= 1
    else:
        assert cost.generated_tokens > 0
