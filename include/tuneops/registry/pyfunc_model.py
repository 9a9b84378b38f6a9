"""The registered MLflow model, logged as "models from code" (no pickled objects), for MLflow clients.

``mlflow.pyfunc.load_model("models:/<name>@champion").predict(...)`` takes a list of prompt
strings, or records with the template's fields (e.g. ``{"subject": ..., "input": ...}``),
which are rendered with the prompt template the model was trained with.

A version that holds a LoRA adapter records its base model (``model_config["base"]``: id, content
fingerprint, where it is stored, and the MLflow artifact it was logged to once per fingerprint):
loading downloads the base through the same MLflow client (no other credentials), checks its
fingerprint and merges the adapter in memory, so the predictions are those of the merged model the
gate measured.

Loading this flavour executes the version's stored copy of this file and, in a fresh process,
the copy of ``tuneops`` bundled in its ``code/`` folder. tuneops' own loaders never do: they read
the weights, tokenizer and config as data (``tuneops.registry.registry.load_version_files``).
"""

import json

import mlflow
from mlflow.pyfunc import PythonModel


class TextGenerator(PythonModel):
    def load_context(self, context):
        from tuneops.config import Decoding
        from tuneops.core.templates import PromptTemplate
        from tuneops.models.generation import load_model

        config = context.model_config or {}
        if config.get("base"):
            from tuneops.core.settings import load_settings
            from tuneops.registry.registry import fetch_logged_base

            base = fetch_logged_base(json.loads(config["base"]), load_settings().cache_dir)
            self.model, self.tokenizer = load_model(base, context.artifacts["model"])
        else:
            self.model, self.tokenizer = load_model(context.artifacts["model"])
        self.template = (
            PromptTemplate.model_validate(json.loads(config["template"])) if config.get("template") else None
        )
        self.max_new_tokens = int(config.get("max_new_tokens", 48))
        # The decoding the gate evaluated, so serving returns what was measured.
        self.decoding = (
            Decoding.model_validate(json.loads(config["decoding"])) if config.get("decoding") else Decoding()
        )

    def predict(self, context, model_input, params=None):
        from tuneops.core.templates import adds_special_tokens, prompts_for_inputs
        from tuneops.models.generation import generate

        records = model_input.to_dict("records") if hasattr(model_input, "to_dict") else list(model_input)
        prompts = prompts_for_inputs(records, self.template, self.tokenizer)
        max_new = int((params or {}).get("max_new_tokens", self.max_new_tokens))
        special = adds_special_tokens(self.template) if self.template is not None else True
        return generate(
            self.model,
            self.tokenizer,
            prompts,
            max_new_tokens=max_new,
            add_special_tokens=special,
            decoding=self.decoding,
        )


mlflow.models.set_model(TextGenerator())
