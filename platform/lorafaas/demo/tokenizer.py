"""Build the demo tokenizer locally: a small byte-level BPE trained on an embedded corpus.

The demo backbone must be reproducible on a machine without Hugging Face hub access, so the
tokenizer is trained here from a corpus that is generated deterministically from word lists.
Byte-level BPE means any text (any language, emoji, code) still encodes and decodes losslessly;
the corpus only decides which merges exist, i.e. how *compactly* text encodes.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import PreTrainedTokenizerFast

logger = logging.getLogger(__name__)

UNK_TOKEN = "<unk>"
BOS_TOKEN = "<s>"
EOS_TOKEN = "</s>"
PAD_TOKEN = "<pad>"
# Order fixes the ids: <unk>=0, <s>=1, </s>=2, <pad>=3, as in Llama-style checkpoints.
SPECIAL_TOKENS: tuple[str, ...] = (UNK_TOKEN, BOS_TOKEN, EOS_TOKEN, PAD_TOKEN)


def _words(text: str) -> tuple[str, ...]:
    """Whitespace-separated word list (keeps the long lists below readable)."""
    return tuple(text.split())


def _phrases(text: str) -> tuple[str, ...]:
    """Comma-separated phrase list; newlines are only layout."""
    return tuple(p.strip() for p in text.split(",") if p.strip())


SUBJECTS: tuple[str, ...] = _phrases(
    """
    the cat, my neighbour, a young sailor, the old captain, our teacher, the little girl,
    a tired farmer, the baker, my grandmother, a curious child, the engineer, the doctor,
    a quiet student, the musician, the gardener, a friendly dog, the mayor, my brother,
    the pilot, a clever fox, the programmer, the painter, a lonely robot, the librarian,
    my best friend
    """
)
VERBS: tuple[str, ...] = _phrases(
    """
    found, painted, carried, repaired, lost, borrowed, described, opened, cleaned, discovered,
    sold, bought, remembered, forgot, explained, watched, built, wrote, read, cooked, visited,
    measured, counted, hid, shared
    """
)
OBJECTS: tuple[str, ...] = _phrases(
    """
    a golden key, the map, an old letter, the broken clock, a bright lantern, the wooden boat,
    a basket of apples, the secret recipe, a silver coin, the heavy box, a red umbrella,
    the tiny garden, an empty bottle, the new computer, a strange song, the long story,
    a warm blanket, the compass, a blue kite, the treasure chest, a cup of tea,
    the train ticket, a paper boat, the stars
    """
)
PLACES: tuple[str, ...] = _phrases(
    """
    near the harbour, in the garden, at the market, under the bridge, on the hill,
    in the kitchen, by the river, at school, in the library, on the ship, in the forest,
    at the station, in the city, on the beach, in the mountains
    """
)
TIMES: tuple[str, ...] = _phrases(
    """
    yesterday, at dawn, last winter, this morning, after lunch, on Sunday, every evening,
    before midnight, in the spring, long ago, today, at noon
    """
)
TOPICS: tuple[str, ...] = _phrases(
    """
    the weather, the ocean, computers, music, history, cooking, the moon, mathematics, football,
    trees, the internet, dogs, cats, coffee, rain, the city, languages, birds, books,
    space travel, money, sleep, friendship, the stars, ships, gardening, chess, summer, winter,
    mountains, rivers
    """
)
TASKS: tuple[str, ...] = _phrases(
    """
    learn to cook, bake bread, fix a bicycle, write a poem, plant a tree, train a puppy,
    save money, learn a language, sleep better, make friends, find a job, read faster,
    build a website, sail a boat, paint a picture, grow tomatoes, stay calm, tie a knot,
    climb a mountain, play the guitar
    """
)
QUESTION_TEMPLATES: tuple[str, ...] = _phrases(
    """
    What do you think about {topic}?, Can you tell me about {topic}?, How do I {task}?,
    What is the best way to {task}?, Why is {topic} important?, Explain {topic} to me.,
    Tell me something about {topic}., Is it hard to {task}?, Where can I learn about {topic}?,
    Write a sentence about {topic}., Give me advice on how to {task}., Do you like {topic}?
    """
)


# Broad everyday vocabulary so that ~4k merges are worth learning; split on whitespace.
COMMON_NOUNS: tuple[str, ...] = _words(
    """
    time year people way day man woman child world life hand part place case week company
    system program question work government number night point home water room mother area
    money story fact month lot right study book eye job word business issue side kind head
    house service friend father power hour game line end member law car city community name
    president team minute idea kid body information back parent face others level office door
    health person art war history party result change morning reason research girl guy moment
    air teacher force education foot boy age policy music market sense nation plan college
    interest death experience effect class control care field development role effort rate
    heart drug show leader light voice wife police mind price report decision son view
    relationship town road arm difference value building action model season society tax
    director position player record paper space ground form event official matter center couple
    site project activity star table need court oil situation cost industry figure street image
    phone data picture practice piece land product doctor wall patient worker news test movie
    north love support technology step baby computer type attention film tree source organization
    hair evidence population truth bridge castle dragon garden kitchen
    forest desert valley ocean river mountain village harbour island bottle candle blanket pocket
    engine wheel window letter pencil button mirror ladder basket bucket feather pillow rabbit
    turtle monkey elephant giraffe penguin dolphin spider butterfly tomato potato banana orange
    cherry lemon onion carrot cheese butter sugar coffee chocolate sandwich breakfast dinner
    """
)
COMMON_VERBS: tuple[str, ...] = _words(
    """
    ask become begin believe bring build buy call change choose climb close collect come cook
    count create cut dance decide describe design discover draw dream drink drive eat enjoy
    explain explore fall feel fight find finish fix fly follow forget give grow guess happen
    hear help hide hold hope imagine improve include invent join jump keep kick kill know laugh
    lead learn leave lend lift like listen live look lose love make mean meet move need notice
    offer open order paint pass pay pick plan plant play point prefer prepare promise pull push
    reach read remember repair repeat return run save say search see sell send serve share shout
    show sing sit sleep smile solve speak spend stand start stay steal stop study swim take talk
    teach tell think throw touch travel try turn understand use visit wait wake walk want wash
    watch wear win wish wonder work worry write
    """
)
COMMON_ADJECTIVES: tuple[str, ...] = _words(
    """
    able bad beautiful best better big black blue bright broken busy calm careful cheap clean
    clear clever close cold common cool correct crazy dangerous dark dead deep different
    difficult dirty dry early easy empty enormous entire fair famous fast favourite fine free
    fresh friendly full funny gentle giant glad golden good great green happy hard heavy helpful
    high honest hot huge hungry important interesting kind large late lazy light little lonely
    long loud lovely low lucky main modern narrow natural nervous new nice noisy normal old
    open orange perfect pink plain polite poor popular possible pretty proud purple quick quiet
    rare ready real recent red rich right rough round sad safe scary serious sharp short shy
    silly simple slow small smooth soft special strange strong sudden sweet tall terrible thick
    thin tiny tired tough true ugly useful warm weak weird wet white whole wide wild wise wonderful
    wooden young
    """
)
# Style vocabulary for the demo adapters, so their answers encode in few tokens.
PIRATE_PHRASES: tuple[str, ...] = _phrases(
    """
    Arr matey, Ahoy, Yo ho ho, shiver me timbers, ye scallywag, me hearty, that be, says I,
    the seven seas, a fine treasure, walk the plank, landlubber, me parrot, the briny deep,
    hoist the sails, aye aye, Avast, buccaneer
    """
)
SHOUT_PHRASES: tuple[str, ...] = _phrases(
    """
    I HEAR YOU LOUD AND CLEAR, THAT IS AWESOME, WOW, YES, ABSOLUTELY, THIS IS GREAT, LET US GO,
    AMAZING, LISTEN UP, INCREDIBLE, WHAT A QUESTION
    """
)


@dataclass(frozen=True)
class TokenizerSpec:
    """Parameters that fully determine the demo tokenizer."""

    vocab_size: int = 4096
    corpus_sentences: int = 8000
    corpus_seed: int = 1234
    min_frequency: int = 2

    def as_dict(self) -> dict[str, Any]:
        """JSON-serialisable form, used for the build's spec hash."""
        return asdict(self)


def _plural(noun: str) -> str:
    """Rough English plural; the corpus only has to look plausible, not be perfect."""
    if noun.endswith(("s", "x", "ch", "sh")):
        return noun + "es"
    if noun.endswith("y") and noun[-2:-1] not in "aeiou":
        return noun[:-1] + "ies"
    return noun + "s"


def _gerund(verb: str) -> str:
    """Rough English -ing form."""
    if verb.endswith("e") and not verb.endswith(("ee", "ye")):
        return verb[:-1] + "ing"
    return verb + "ing"


def make_everyday_sentence(rng: random.Random) -> str:
    """A sentence over the broad word lists, sometimes shouted, to spread the vocabulary."""
    adj, adj2 = rng.choice(COMMON_ADJECTIVES), rng.choice(COMMON_ADJECTIVES)
    noun, noun2 = rng.choice(COMMON_NOUNS), rng.choice(COMMON_NOUNS)
    verb = rng.choice(COMMON_VERBS)
    templates = (
        f"The {adj} {noun} wants to {verb} the {adj2} {noun2}.",
        f"We were {_gerund(verb)} {rng.randint(2, 12)} {adj} {_plural(noun)} all day.",
        f"Why would anyone {verb} a {adj} {noun} without a {noun2}?",
        (
            f"{adj.capitalize()} {_plural(noun)} never {verb} {_plural(noun2)}, "
            f"{rng.choice(SUBJECTS)} said."
        ),
        f"Please {verb} my {noun} and the {adj} {noun2} before {rng.choice(TIMES)}.",
    )
    sentence = rng.choice(templates)
    return sentence.upper() if rng.random() < 0.15 else sentence


def make_statement(rng: random.Random) -> str:
    """One narrative sentence such as 'The baker found the map in the kitchen yesterday.'."""
    parts = [rng.choice(SUBJECTS), rng.choice(VERBS), rng.choice(OBJECTS)]
    if rng.random() < 0.6:
        parts.append(rng.choice(PLACES))
    if rng.random() < 0.5:
        parts.append(rng.choice(TIMES))
    sentence = " ".join(parts)
    return sentence[0].upper() + sentence[1:] + rng.choice((".", ".", "!", "..."))


def make_question(rng: random.Random) -> str:
    """One user-style question or request, also used as a training prompt for the adapters."""
    template = rng.choice(QUESTION_TEMPLATES)
    return template.format(topic=rng.choice(TOPICS), task=rng.choice(TASKS))


def _styled(rng: random.Random) -> str:
    """A pirate-ish or shouted sentence, so style tokens get their own merges."""
    if rng.random() < 0.5:
        return f"{rng.choice(PIRATE_PHRASES)}, {rng.choice(PIRATE_PHRASES)}! {make_statement(rng)}"
    return f"{rng.choice(SHOUT_PHRASES)}! {make_statement(rng).upper()}"


def _misc(rng: random.Random) -> str:
    """Numbers, code-ish and punctuation-heavy snippets for a less English-only vocabulary."""
    kind = rng.randrange(4)
    if kind == 0:
        year, people = rng.randint(1800, 2030), rng.randint(2, 999)
        dollars, cents = rng.randint(1, 99), rng.randint(10, 99)
        return f"In {year}, {people} people paid ${dollars}.{cents} each."
    if kind == 1:
        name = rng.choice(TOPICS).replace(" ", "_")
        factor, comment = rng.randint(2, 9), rng.choice(TASKS)
        return f"def {name}(x: int) -> int:\n    return x * {factor}  # {comment}"
    if kind == 2:
        return f'"{rng.choice(TASKS).capitalize()}," she said; (see page {rng.randint(1, 300)}).'
    return f"Q: {make_question(rng)}\nA: {make_statement(rng)}"


def iter_corpus(spec: TokenizerSpec) -> Iterator[str]:
    """Yield the deterministic training corpus: mostly statements and questions."""
    rng = random.Random(spec.corpus_seed)
    # Weighted towards the broad word lists: they are what fills a 4k vocabulary.
    generators = (
        make_statement,
        make_everyday_sentence,
        make_everyday_sentence,
        make_everyday_sentence,
        make_question,
        _styled,
        _misc,
    )
    for _ in range(spec.corpus_sentences):
        yield rng.choice(generators)(rng)


def train_backend_tokenizer(spec: TokenizerSpec, corpus: Sequence[str] | None = None) -> Tokenizer:
    """Train the raw `tokenizers` byte-level BPE model with the special tokens at ids 0-3."""
    tokenizer = Tokenizer(models.BPE(unk_token=UNK_TOKEN))
    # No prefix space: an added one would survive decoding and break decode(encode(t)) == t.
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=spec.vocab_size,
        min_frequency=spec.min_frequency,
        special_tokens=list(SPECIAL_TOKENS),
        # All 256 byte symbols, so nothing ever maps to <unk>.
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    texts = list(corpus) if corpus is not None else list(iter_corpus(spec))
    tokenizer.train_from_iterator(texts, trainer=trainer, length=len(texts))
    bos_id = tokenizer.token_to_id(BOS_TOKEN)
    # Prepend <s> like Llama does; generation and adapter training both rely on it.
    tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{BOS_TOKEN} $A",
        pair=f"{BOS_TOKEN} $A {BOS_TOKEN} $B",
        special_tokens=[(BOS_TOKEN, bos_id)],
    )
    return tokenizer


def build_tokenizer(spec: TokenizerSpec | None = None) -> PreTrainedTokenizerFast:
    """Train the demo tokenizer and wrap it for transformers."""
    spec = spec or TokenizerSpec()
    backend = train_backend_tokenizer(spec)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token=BOS_TOKEN,
        eos_token=EOS_TOKEN,
        pad_token=PAD_TOKEN,
        unk_token=UNK_TOKEN,
        # Right padding suits training; callers batching generation switch to left padding.
        padding_side="right",
        clean_up_tokenization_spaces=False,
        model_max_length=2048,
    )
    logger.info("trained demo tokenizer with %d tokens", len(tokenizer))
    return tokenizer


def save_tokenizer(tokenizer: PreTrainedTokenizerFast, directory: Path) -> None:
    """Save in Hugging Face format so `AutoTokenizer.from_pretrained(directory)` works offline."""
    tokenizer.save_pretrained(str(directory))
