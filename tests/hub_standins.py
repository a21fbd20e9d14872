"""Tiny stand-ins of the course's Hub checkpoints, and a small stand-in of the Hub's HTTP API.

`build(root)` writes, for every NAME of utils.CHECKPOINTS, a repository of the same classes and
configuration shape as the real one (random weights, a few hidden units) under root/<type>s/<repo_id>,
with a commit id that starts with the pinned revision. `StandinHub(root)` serves them on
127.0.0.1 the way huggingface.co does for huggingface_hub, transformers and datasets: the resolve
URLs (HEAD and ranged GET), the repository info, tree and paths-info APIs. Faults can be switched
on per repository ("missing", "cut") or for all requests ("gone") to test the failure paths.
Built by code, nothing shipped; used by tests/test_hub_cells.py.
"""
import hashlib
import io
import json
import re
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from utils.hub import CHECKPOINTS

# ImageNet-1k's five cat classes keep their index (the rest are placeholders).
IMAGENET_CATS = {281: "tabby, tabby cat", 282: "tiger cat", 283: "Persian cat",
                 284: "Siamese cat, Siamese", 285: "Egyptian cat"}
# The character vocabulary of wav2vec2-base-960h's CTC head (blank first, "|" between words).
CTC_VOCAB = ["<pad>", "<s>", "</s>", "<unk>", "|", *"ETAONIHSRDLUMWCFGYPBVK'XJQZ"]
TEXT = ("a photo of a cat dog cup coffee drawing lying on blanket saucer astronaut in space suit "
        "the snow bowl soup this is").split()


def commit_of(checkpoint):
    """A 40-hex commit id that starts with the pinned revision (or a hash of the repo for main)."""
    digest = hashlib.sha1(checkpoint.repo_id.encode()).hexdigest()
    rev = checkpoint.revision
    return (rev + digest)[:40] if rev else digest


def _small(**kw):
    return dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, **kw)


def _vit(path):
    from transformers import ViTConfig, ViTForImageClassification, ViTImageProcessor

    labels = {i: IMAGENET_CATS.get(i, f"imagenet class {i}") for i in range(1000)}
    config = ViTConfig(**_small(), image_size=224, patch_size=16, id2label=labels,
                       label2id={v: k for k, v in labels.items()})
    ViTForImageClassification(config).save_pretrained(path)
    ViTImageProcessor(size={"height": 224, "width": 224}, image_mean=[0.5] * 3,
                      image_std=[0.5] * 3).save_pretrained(path)


def _dinov2(path):
    from transformers import BitImageProcessor, Dinov2Config, Dinov2Model

    Dinov2Model(Dinov2Config(**_small(), image_size=518, patch_size=14)).save_pretrained(path)
    BitImageProcessor(size={"shortest_edge": 256}, crop_size={"height": 224, "width": 224},
                      image_mean=[0.485, 0.456, 0.406], image_std=[0.229, 0.224, 0.225]).save_pretrained(path)


def _tapas_repo(path, model_class, **config):
    """A TAPAS checkpoint at toy size: `model_class` from a small TapasConfig, and the shipped small WordPiece
    vocabulary as its TapasTokenizer."""
    from transformers import TapasConfig, TapasTokenizer

    from utils.core import data_path

    tokenizer = TapasTokenizer(str(data_path("tapas", "small_tapas", "vocab.txt")))
    model_class(TapasConfig(**_small(), vocab_size=tokenizer.vocab_size, max_position_embeddings=1024,
                            **config)).save_pretrained(path)
    tokenizer.save_pretrained(path)


def _tapas(path):
    from transformers import TapasForQuestionAnswering

    _tapas_repo(path, TapasForQuestionAnswering, num_aggregation_labels=4,
                aggregation_labels={0: "NONE", 1: "SUM", 2: "AVERAGE", 3: "COUNT"}, use_answer_as_supervision=True,
                select_one_column=True, allow_empty_column_selection=False)


def _tapas_sqa(path):
    """TAPAS fine-tuned on SQA: cell selection only (no aggregation head), one column at a time."""
    from transformers import TapasForQuestionAnswering

    _tapas_repo(path, TapasForQuestionAnswering, num_aggregation_labels=0, select_one_column=True,
                allow_empty_column_selection=False)


def _tapas_tabfact(path):
    """TAPAS fine-tuned on TabFact: a two-class sequence classifier over the statement and the table."""
    from transformers import TapasForSequenceClassification

    _tapas_repo(path, TapasForSequenceClassification, num_labels=2)


def _tapas_tiny(path):
    """TAPAS's smallest pre-trained encoder as its repository holds it: a TapasModel (pooler included) whose config
    has no question-answering settings (no aggregation head: TapasConfig's defaults)."""
    from transformers import TapasModel

    _tapas_repo(path, TapasModel)


def _tapex(path):
    """TAPEX (BART fine-tuned on WikiTableQuestions) at toy size: a BartForConditionalGeneration and a byte-level BPE
    tokenizer saved as vocab.json and merges.txt, whose tokenizer_config.json names TapexTokenizer, as the real
    repository's does (transformers 5 has no such class; BartTokenizer reads the two files)."""
    from tokenizers import ByteLevelBPETokenizer
    from transformers import BartConfig, BartForConditionalGeneration, GenerationConfig

    from utils.tapas import book_examples, book_frame, tapex_input

    specials = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
    texts = [tapex_input(book_frame(), question) for question, _, _ in book_examples()[0]]
    backend = ByteLevelBPETokenizer()
    backend.train_from_iterator(texts, vocab_size=400, min_frequency=1, special_tokens=specials)
    path.mkdir(parents=True, exist_ok=True)
    backend.save_model(str(path))
    tokens = dict(zip(["bos_token", "pad_token", "eos_token", "unk_token", "mask_token"], specials))
    (path / "tokenizer_config.json").write_text(json.dumps(
        {"tokenizer_class": "TapexTokenizer", "do_lower_case": True, "max_cell_length": 15, "add_prefix_space": False,
         "errors": "replace", "model_max_length": 1024, "sep_token": "</s>", "cls_token": "<s>", **tokens}))
    (path / "special_tokens_map.json").write_text(json.dumps({"sep_token": "</s>", "cls_token": "<s>", **tokens}))
    ids = {name: specials.index(token) for name, token in tokens.items()}
    config = BartConfig(vocab_size=backend.get_vocab_size(), d_model=32, encoder_layers=2, decoder_layers=2,
                        encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=64, decoder_ffn_dim=64,
                        max_position_embeddings=1024, bos_token_id=ids["bos_token"], pad_token_id=ids["pad_token"],
                        eos_token_id=ids["eos_token"], decoder_start_token_id=ids["eos_token"],
                        forced_bos_token_id=ids["bos_token"], forced_eos_token_id=ids["eos_token"])
    model = BartForConditionalGeneration(config)
    model.generation_config = GenerationConfig(bos_token_id=ids["bos_token"], pad_token_id=ids["pad_token"],
                                               eos_token_id=ids["eos_token"], decoder_start_token_id=ids["eos_token"],
                                               forced_bos_token_id=ids["bos_token"],
                                               forced_eos_token_id=ids["eos_token"])
    model.save_pretrained(path)


def _wav2vec2(path):
    from transformers import (Wav2Vec2Config, Wav2Vec2CTCTokenizer, Wav2Vec2FeatureExtractor,
                              Wav2Vec2ForCTC, Wav2Vec2Processor)

    path.mkdir(parents=True, exist_ok=True)
    (path / "vocab.json").write_text(json.dumps({c: i for i, c in enumerate(CTC_VOCAB)}))
    tokenizer = Wav2Vec2CTCTokenizer(str(path / "vocab.json"), word_delimiter_token="|")
    features = Wav2Vec2FeatureExtractor(feature_size=1, sampling_rate=16000, padding_value=0.0,
                                        do_normalize=True, return_attention_mask=False)
    Wav2Vec2Processor(feature_extractor=features, tokenizer=tokenizer).save_pretrained(path)
    config = Wav2Vec2Config(**_small(), vocab_size=len(CTC_VOCAB), conv_dim=(16,) * 7,
                            num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2,
                            pad_token_id=0, ctc_loss_reduction="sum")
    Wav2Vec2ForCTC(config).save_pretrained(path)


def _whisper(path):
    """Whisper at toy size: a 2-layer encoder-decoder over 80 log-mel bins, a byte-level BPE tokenizer
    with no merges (one token per byte) and Whisper's special tokens, and a generation config that
    knows English and the transcribe task."""
    from transformers import (GenerationConfig, WhisperConfig, WhisperFeatureExtractor,
                              WhisperForConditionalGeneration, WhisperProcessor, WhisperTokenizer)
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    path.mkdir(parents=True, exist_ok=True)
    byte_chars = list(bytes_to_unicode().values())
    specials = ["<|endoftext|>", "<|startoftranscript|>", "<|en|>", "<|translate|>", "<|transcribe|>",
                "<|startoflm|>", "<|startofprev|>", "<|nocaptions|>", "<|notimestamps|>"]
    vocab = {c: i for i, c in enumerate(byte_chars + specials)}
    tokenizer = WhisperTokenizer(vocab=vocab, merges=[], pad_token="<|endoftext|>")
    tokenizer.add_special_tokens({"additional_special_tokens": specials[1:]})
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in specials}
    WhisperProcessor(feature_extractor=WhisperFeatureExtractor(feature_size=80), tokenizer=tokenizer).save_pretrained(path)
    config = WhisperConfig(vocab_size=len(tokenizer), num_mel_bins=80, d_model=32, encoder_layers=2, decoder_layers=2,
                           encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=64,
                           decoder_ffn_dim=64, max_source_positions=1500, max_target_positions=64,
                           pad_token_id=ids["<|endoftext|>"], bos_token_id=ids["<|endoftext|>"],
                           eos_token_id=ids["<|endoftext|>"], decoder_start_token_id=ids["<|startoftranscript|>"])
    model = WhisperForConditionalGeneration(config)
    model.generation_config = GenerationConfig(
        decoder_start_token_id=ids["<|startoftranscript|>"], eos_token_id=ids["<|endoftext|>"],
        pad_token_id=ids["<|endoftext|>"], bos_token_id=ids["<|endoftext|>"], max_length=20,
        is_multilingual=True, lang_to_id={"<|en|>": ids["<|en|>"]},
        task_to_id={"transcribe": ids["<|transcribe|>"], "translate": ids["<|translate|>"]},
        no_timestamps_token_id=ids["<|notimestamps|>"], begin_suppress_tokens=[ids["<|endoftext|>"]])
    model.save_pretrained(path)


def _clip(path):
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor

    from utils.clip import build_tokenizer

    tokenizer = build_tokenizer([" ".join(TEXT)] * 3, path / "tokenizer", vocab_size=600)
    config = CLIPConfig(text_config=_small(vocab_size=len(tokenizer), max_position_embeddings=77,
                                           bos_token_id=0, eos_token_id=1, pad_token_id=1),
                        vision_config=_small(image_size=224, patch_size=32), projection_dim=16)
    CLIPModel(config).save_pretrained(path)
    CLIPProcessor(image_processor=CLIPImageProcessor(), tokenizer=tokenizer).save_pretrained(path)
    for f in (path / "tokenizer").iterdir():
        f.unlink()
    (path / "tokenizer").rmdir()


def _gpt2(path):
    from transformers import GPT2Config, GPT2LMHeadModel

    GPT2LMHeadModel(GPT2Config(n_embd=32, n_layer=2, n_head=2, vocab_size=1000, bos_token_id=999, eos_token_id=999)).save_pretrained(path)


def _longformer(path):
    from transformers import LongformerConfig

    LongformerConfig(**_small(), attention_window=[512, 512]).save_pretrained(path)


def _bigbird(path):
    from transformers import BigBirdConfig

    BigBirdConfig(**_small(), block_size=64, num_random_blocks=3,
                  attention_type="block_sparse").save_pretrained(path)


def _siglip(path):
    """SigLIP 2 (fixed resolution, loaded as SiglipModel) at toy size: a two-tower SiglipModel with its
    learned scale and bias, a SigLIP image processor at 224 pixels and a word-level tokenizer (the real
    one is Gemma's) that pads to the 64 tokens the pipeline asks of SigLIP models."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast, SiglipConfig, SiglipImageProcessor, SiglipModel

    words = ["<pad>", "<eos>", "<unk>", *TEXT, "tabby"]
    backend = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="<unk>", eos_token="<eos>",
                            pad_token="<pad>", model_max_length=64).save_pretrained(path)
    SiglipImageProcessor(size={"height": 224, "width": 224}).save_pretrained(path)
    config = SiglipConfig(text_config=_small(vocab_size=len(words), max_position_embeddings=64,
                                             pad_token_id=0, eos_token_id=1),
                          vision_config=_small(image_size=224, patch_size=16))
    SiglipModel(config).save_pretrained(path)


def _llava(path):
    """LLaVA's three parts at toy size: a SigLIP image encoder, a projection, a Qwen2 language model,
    with a word-level tokenizer that knows `<image>` and a chat template of the same shape."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import (LlavaConfig, LlavaForConditionalGeneration, LlavaProcessor,
                              PreTrainedTokenizerFast, Qwen2Config, SiglipImageProcessor,
                              SiglipVisionConfig)

    words = ["<unk>", "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<image>", "user", "assistant",
             *TEXT]
    backend = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="<unk>",
                                        eos_token="<|im_end|>", pad_token="<|endoftext|>",
                                        additional_special_tokens=["<image>", "<|im_start|>"])
    template = ("{% for m in messages %}<|im_start|> {{ m['role'] }} "
                "{% for c in m['content'] %}{% if c['type'] == 'image' %}<image> "
                "{% else %}{{ c['text'] }} {% endif %}{% endfor %}<|im_end|> {% endfor %}"
                "{% if add_generation_prompt %}<|im_start|> assistant {% endif %}")
    image_size, patch = 32, 16
    LlavaProcessor(image_processor=SiglipImageProcessor(size={"height": image_size, "width": image_size}),
                   tokenizer=tokenizer, patch_size=patch, chat_template=template,
                   vision_feature_select_strategy="full",
                   num_additional_image_tokens=0).save_pretrained(path)
    vision = SiglipVisionConfig(**_small(), image_size=image_size, patch_size=patch)
    text = Qwen2Config(**_small(), vocab_size=len(words), num_key_value_heads=2)
    config = LlavaConfig(vision_config=vision.to_dict(), text_config=text.to_dict(),
                         image_token_id=words.index("<image>"), vision_feature_layer=-1,
                         vision_feature_select_strategy="full", projector_hidden_act="gelu")
    LlavaForConditionalGeneration(config).save_pretrained(path)


def _coder(path):
    """Qwen2.5-Coder-Instruct at toy size: a Qwen2 causal LM, a word-level tokenizer and a chat template of the
    same shape. Its random replies are never valid pandas, so the notebook's evaluator refuses them."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM

    words = ["<unk>", "<|endoftext|>", "<|im_start|>", "<|im_end|>", "system", "user", "assistant", "df", *TEXT]
    backend = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    template = ("{% for m in messages %}<|im_start|> {{ m['role'] }} {{ m['content'] }} <|im_end|> {% endfor %}"
                "{% if add_generation_prompt %}<|im_start|> assistant {% endif %}")
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="<unk>", eos_token="<|im_end|>",
                                        pad_token="<|endoftext|>", additional_special_tokens=["<|im_start|>"])
    tokenizer.chat_template = template
    tokenizer.save_pretrained(path)
    config = Qwen2Config(**_small(), vocab_size=len(words), num_key_value_heads=2,
                         eos_token_id=words.index("<|im_end|>"), pad_token_id=words.index("<|endoftext|>"))
    Qwen2ForCausalLM(config).save_pretrained(path)


def _mamba(path):
    """Mamba-130m at toy size: a MambaForCausalLM of 2 layers with the real state size and convolution
    width, and a word-level tokenizer (the real one is GPT-NeoX's BPE)."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import MambaConfig, MambaForCausalLM, PreTrainedTokenizerFast

    words = ["<|endoftext|>", "<unk>", *TEXT]
    backend = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="<unk>", eos_token="<|endoftext|>",
                            bos_token="<|endoftext|>", pad_token="<|endoftext|>").save_pretrained(path)
    config = MambaConfig(vocab_size=len(words), hidden_size=32, num_hidden_layers=2, state_size=16, expand=2,
                         conv_kernel=4, bos_token_id=0, eos_token_id=0, pad_token_id=0)
    MambaForCausalLM(config).save_pretrained(path)


def _docqa(path):
    """LayoutLM for extractive question answering with a byte-level BPE tokenizer laid out as RoBERTa's
    (the real checkpoint's tokenizer class), trained on the words of the notebook's invoice."""
    from tokenizers import ByteLevelBPETokenizer
    from transformers import LayoutLMConfig, LayoutLMForQuestionAnswering, RobertaTokenizerFast

    from utils.documents import INVOICE_LINES

    words = [text for line in INVOICE_LINES for text, _ in line] + ["What is the total amount due?"]
    backend = ByteLevelBPETokenizer(add_prefix_space=True)
    backend.train_from_iterator(words, vocab_size=300, min_frequency=1,
                                special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"])
    path.mkdir(parents=True, exist_ok=True)
    backend.save_model(str(path))
    tokenizer = RobertaTokenizerFast(vocab_file=str(path / "vocab.json"), merges_file=str(path / "merges.txt"),
                                     add_prefix_space=True, model_max_length=512)
    tokenizer.save_pretrained(path)
    config = LayoutLMConfig(**_small(), vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id,
                            bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                            max_position_embeddings=514, type_vocab_size=1, tokenizer_class="RobertaTokenizer")
    LayoutLMForQuestionAnswering(config).save_pretrained(path)


def _donut(path):
    """Donut fine-tuned on DocVQA at toy size: a VisionEncoderDecoderModel of a DonutSwin encoder and an
    MBart decoder, a Donut image processor and a word-level tokenizer (the real one is XLM-RoBERTa's
    SentencePiece) that knows the task tokens the pipeline writes into its prompt."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import (DonutImageProcessor, DonutProcessor, DonutSwinConfig, DonutSwinModel,
                              GenerationConfig, MBartConfig, MBartForCausalLM, PreTrainedTokenizerFast,
                              VisionEncoderDecoderModel)

    from utils.documents import INVOICE_LINES

    task = ["<s_docvqa>", "<s_question>", "</s_question>", "<s_answer>", "</s_answer>"]
    words = list(dict.fromkeys(["<s>", "<pad>", "</s>", "<unk>", *task, *TEXT,
                                *(text for line in INVOICE_LINES for text, _ in line)]))
    backend = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, bos_token="<s>", eos_token="</s>",
                                        unk_token="<unk>", pad_token="<pad>", additional_special_tokens=task)
    DonutProcessor(image_processor=DonutImageProcessor(size={"height": 64, "width": 48}),
                   tokenizer=tokenizer).save_pretrained(path)
    encoder = DonutSwinConfig(image_size=[64, 48], patch_size=4, embed_dim=16, depths=[1, 1], num_heads=[1, 2],
                              window_size=4)
    decoder = MBartConfig(vocab_size=len(words), d_model=32, decoder_layers=1, decoder_attention_heads=2,
                          decoder_ffn_dim=64, max_position_embeddings=64, is_decoder=True, add_cross_attention=True,
                          bos_token_id=0, pad_token_id=1, eos_token_id=2)
    model = VisionEncoderDecoderModel(encoder=DonutSwinModel(encoder), decoder=MBartForCausalLM(decoder))
    model.config.decoder_start_token_id, model.config.pad_token_id, model.config.eos_token_id = 0, 1, 2
    model.generation_config = GenerationConfig(decoder_start_token_id=0, bos_token_id=0, pad_token_id=1,
                                               eos_token_id=2, max_length=24)
    model.save_pretrained(path)


def _librispeech(path, checkpoint):
    """Two utterances of synthetic tones, laid out as the LibriSpeech sample is (audio, text, id...)."""
    import datasets
    import numpy as np
    import soundfile as sf

    rows = []
    for i, (seconds, text) in enumerate([(1.5, "A CAT ON A BLANKET"), (1.0, "A CUP OF COFFEE")]):
        t = np.arange(int(16000 * seconds)) / 16000
        buffer = io.BytesIO()
        sf.write(buffer, 0.1 * np.sin(2 * np.pi * (220 + 110 * i) * t), 16000, format="FLAC")
        name = f"1272-128104-{i:04d}.flac"
        rows.append({"file": name, "audio": {"bytes": buffer.getvalue(), "path": name}, "text": text,
                     "speaker_id": 1272, "chapter_id": 128104, "id": f"1272-128104-{i:04d}"})
    features = datasets.Features({"file": datasets.Value("string"),
                                  "audio": datasets.Audio(sampling_rate=16000, decode=False),
                                  "text": datasets.Value("string"), "speaker_id": datasets.Value("int64"),
                                  "chapter_id": datasets.Value("int64"), "id": datasets.Value("string")})
    # Built as plain columns, then cast: encoding audio through datasets would need torchcodec.
    table = datasets.Dataset.from_list(rows).cast(features)
    folder = path / checkpoint.config / checkpoint.split
    folder.mkdir(parents=True, exist_ok=True)
    table.to_parquet(folder / "0000.parquet")
    (path / "README.md").write_text(
        "---\nconfigs:\n- config_name: clean\n  data_files:\n  - split: validation\n"
        "    path: clean/validation/*.parquet\n---\nA stand-in of the LibriSpeech sample.\n")


BUILDERS = {"vit": _vit, "tapas": _tapas, "wav2vec2": _wav2vec2, "whisper": _whisper, "clip": _clip,
            "gpt2": _gpt2, "longformer": _longformer, "bigbird": _bigbird, "dinov2": _dinov2,
            "coder": _coder, "docqa": _docqa, "donut": _donut, "siglip": _siglip, "llava": _llava, "mamba": _mamba,
            "tapas_sqa": _tapas_sqa, "tapas_tabfact": _tapas_tabfact, "tapex": _tapex,
            "tapas_tiny": _tapas_tiny}


def repo_dir(root, checkpoint):
    return Path(root) / f"{checkpoint.repo_type}s" / checkpoint.repo_id


def build(root, names=None):
    """Write the stand-in repositories under `root`; returns the NAMEs built."""
    import torch

    torch.manual_seed(0)
    built = []
    for name in names or CHECKPOINTS:
        checkpoint = CHECKPOINTS[name]
        path = repo_dir(root, checkpoint)
        if name == "librispeech_dummy":
            _librispeech(path, checkpoint)
        elif name in BUILDERS:
            BUILDERS[name](path)
        else:
            continue
        built.append(name)
    return built


# ---------------------------------------------------------------- the HTTP stand-in

class StandinHub:
    """Serve the repositories under `root` at http://127.0.0.1:PORT like the Hub's HTTP API."""

    def __init__(self, root):
        self.root = Path(root)
        self.faults = {}  # repo_id -> "missing" | "cut"
        self.gone = False  # every request dropped without an answer
        self.requests = []
        self.repos = {}
        for checkpoint in CHECKPOINTS.values():
            path = repo_dir(root, checkpoint)
            if path.is_dir():
                self.repos[(checkpoint.repo_type, checkpoint.repo_id)] = (path, commit_of(checkpoint))
        handler = type("Handler", (_Handler,), {"hub": self})
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()

    def files(self, path):
        return sorted(p for p in path.rglob("*") if p.is_file())


class _Handler(BaseHTTPRequestHandler):
    hub: StandinHub
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def _json(self, data, code=200, headers=None):
        body = json.dumps(data).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _error(self, code, error_code, message):
        self._json({"error": message}, code, {"X-Error-Code": error_code, "X-Error-Message": message})

    def _repo(self, repo_type, repo_id, revision):
        key = (repo_type, repo_id)
        if key not in self.hub.repos or self.hub.faults.get(repo_id) == "missing":
            self._error(404, "RepoNotFound", f"Repository {repo_id} not found")
            return None
        path, sha = self.hub.repos[key]
        revision = urllib.parse.unquote(revision or "main")
        if revision != "main" and not sha.startswith(revision):
            self._error(404, "RevisionNotFound", f"Invalid rev id: {revision}")
            return None
        return path, sha

    def _entry(self, path, file):
        data = file.read_bytes()
        return {"type": "file", "path": file.relative_to(path).as_posix(), "size": len(data),
                "oid": hashlib.sha1(data).hexdigest()}

    def _dirs(self, path, files):
        return sorted({p.relative_to(path).as_posix() for f in files for p in f.parents
                       if p != path and path in p.parents})

    def do_POST(self):
        self.do_GET()

    def do_HEAD(self):
        self.do_GET()

    def do_GET(self):  # noqa: C901 - one dispatcher, read top to bottom
        hub = self.hub
        hub.requests.append(f"{self.command} {self.path}")
        if hub.gone:
            self.close_connection = True
            self.connection.close()
            return
        url = urllib.parse.urlsplit(self.path)
        route = url.path
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        if route in ("/api/models", "/api/datasets"):
            return self._json([])
        # /api/{models|datasets}/{namespace}/{name}[/revision/{rev}|/tree/{rev}[/path]|/paths-info/{rev}]
        m = re.fullmatch(r"/api/(models|datasets)/([^/]+/[^/]+)(?:/(revision|tree|paths-info)/([^/]+)(/.*)?)?",
                         route)
        if m:
            repo_type, repo_id, kind, revision, sub = m.groups()
            found = self._repo(repo_type[:-1], repo_id, revision)
            if not found:
                return
            path, sha = found
            files = hub.files(path)
            if kind in (None, "revision"):
                siblings = [{"rfilename": e["path"], "size": e["size"], "blobId": e["oid"]}
                            for e in map(lambda f: self._entry(path, f), files)]
                return self._json({"id": repo_id, "_id": sha[:24], "sha": sha, "siblings": siblings,
                                   "private": False, "disabled": False, "gated": False,
                                   "downloads": 0, "likes": 0, "tags": [], "cardData": {},
                                   "lastModified": "2024-01-01T00:00:00.000Z"})
            if kind == "tree":
                prefix = (urllib.parse.unquote(sub or "").strip("/") + "/").lstrip("/")
                recursive = "recursive=true" in (url.query or "").lower() or "recursive=1" in (url.query or "")
                entries = [self._entry(path, f) for f in files]
                entries += [{"type": "directory", "path": d, "oid": "0" * 40} for d in self._dirs(path, files)]
                entries = [e for e in entries if e["path"].startswith(prefix) and
                           (recursive or "/" not in e["path"][len(prefix):])]
                return self._json(sorted(entries, key=lambda e: e["path"]))
            # paths-info: form or JSON body with paths
            text = body.decode()
            try:
                wanted = json.loads(text).get("paths", [])
            except ValueError:
                wanted = urllib.parse.parse_qs(text).get("paths", [])
            wanted = wanted if isinstance(wanted, list) else [wanted]
            entries = [self._entry(path, f) for f in files if f.relative_to(path).as_posix() in wanted]
            entries += [{"type": "directory", "path": d, "oid": "0" * 40} for d in self._dirs(path, files)
                        if d in wanted]
            return self._json(entries)
        # /{repo_id}/resolve/{rev}/{file} and /datasets/{repo_id}/resolve/{rev}/{file}
        m = re.fullmatch(r"/(datasets/)?([^/]+/[^/]+)/resolve/([^/]+)/(.+)", route)
        if m:
            repo_type = "dataset" if m.group(1) else "model"
            found = self._repo(repo_type, m.group(2), m.group(3))
            if not found:
                return
            path, sha = found
            file = path / urllib.parse.unquote(m.group(4))
            if not file.is_file():
                return self._error(404, "EntryNotFound", f"{m.group(4)} does not exist at this revision")
            cut = hub.faults.get(m.group(2)) == "cut" and file.suffix in (".safetensors", ".bin")
            return self._send_file(file, sha, cut=cut)
        self._error(404, "NotFound", f"the stand-in Hub does not serve {route}")

    def _send_file(self, file, sha, cut=False):
        data = file.read_bytes()
        etag = hashlib.sha1(data).hexdigest()
        start, end = 0, len(data)
        ranged = re.fullmatch(r"bytes=(\d+)-(\d*)", self.headers.get("Range", ""))
        if ranged:
            start = int(ranged.group(1))
            end = min(end, int(ranged.group(2)) + 1) if ranged.group(2) else end
        self.send_response(206 if ranged else 200)
        self.send_header("Content-Length", str(end - start))
        self.send_header("ETag", f'"{etag}"')
        self.send_header("X-Repo-Commit", sha)
        self.send_header("Accept-Ranges", "bytes")
        if ranged:
            self.send_header("Content-Range", f"bytes {start}-{end - 1}/{len(data)}")
        self.end_headers()
        if self.command == "HEAD":
            return
        if cut:  # a connection cut mid-file: half the bytes, then nothing (every attempt)
            if start == 0:
                self.wfile.write(data[: len(data) // 2])
            self.close_connection = True
            self.wfile.flush()
            self.connection.close()
            return
        self.wfile.write(data[start:end])
