namespace OnnxOutlierTools.Calibration.Text;

/// <summary>
/// A tokenizer as calibration needs it: text to ids without any special token (the corpus adds BOS, CLS
/// and SEP itself, so every window follows one rule), one token's display text for reports, and the special
/// ids. Implementations wrap Microsoft.ML.Tokenizers where it has the algorithm. Load one with
/// <see cref="TokenizerLocator"/>.
/// </summary>
public abstract class TextTokenizer
{
    private protected TextTokenizer(string source) => Source = source;

    /// <summary>A short name of the format and algorithm: one of <see cref="TokenizerKinds"/>.</summary>
    public abstract string Kind { get; }

    /// <summary>The file the tokenizer was read from.</summary>
    public string Source { get; }

    /// <summary>Number of ids the tokenizer can produce (highest id + 1, added tokens included). It may
    /// exceed the model's embedding rows (exporters shrink test models); callers compare the two.</summary>
    public abstract int VocabSize { get; }

    /// <summary>Special token ids: from the format itself, then tokenizer_config.json /
    /// special_tokens_map.json, then the model's config for what the tokenizer leaves undefined.</summary>
    public SpecialTokenIds Specials { get; internal set; } = SpecialTokenIds.None;

    /// <summary>Whether the tokenizer itself puts a BOS in front of a text, and which fact says so; what
    /// <c>--bos auto</c> follows (see <see cref="BosPolicy"/>).</summary>
    public BosConvention BosConvention { get; internal set; } = new(false, "no BOS convention known");

    /// <summary>What loading decided that a user may want to know (a config id that disagrees with the
    /// tokenizer, an added-token option that is not honoured), one line each.</summary>
    public IReadOnlyList<string> Notes => _notes;
    private readonly List<string> _notes = [];
    internal void AddNote(string note) => _notes.Add(note);

    /// <summary>Token ids of <paramref name="text"/>, no special tokens added (special tokens written
    /// literally in the text are recognized where the format does so, as Hugging Face's tokenizers do).</summary>
    public abstract int[] Encode(string text);

    /// <summary>Display text of one token: "Ġthe" and "▁the" as " the", byte tokens as the character they
    /// stand for ("&lt;0x0A&gt;" as "\n"), special tokens as written ("&lt;s&gt;"), WordPiece continuations
    /// with their "##"; bytes that are only part of a UTF-8 character as "&lt;0xF0&gt;&lt;0x9F&gt;". Control
    /// characters are returned raw: the reporting side escapes them.</summary>
    public abstract string Decode(int id);

    /// <summary>The id of a token written exactly so (vocabulary or added token), or null.</summary>
    public abstract int? TokenToId(string token);

    /// <summary>Whether the token starts a word, so a segment may be cut before it: WordPiece pieces
    /// without "##"; for the other formats tokens whose text starts with a space or a non-letter.</summary>
    public virtual bool StartsWord(int id)
    {
        if (Specials.All.Contains(id)) return true;
        string text = Decode(id);
        return text.Length == 0 || !char.IsLetterOrDigit(text[0]);
    }

    /// <summary>Whether the file's own post-processing template starts a text with the token
    /// <paramref name="bosId"/> (null where the format has no template).</summary>
    internal virtual bool? TemplatePrependsBos(int bosId) => null;

    /// <summary>The format's convention when no config says: SentencePiece models and llama2.c prepend BOS,
    /// GPT-2-style byte-level BPE and tiktoken do not (GPT-2's bos = eos = &lt;|endoftext|&gt; is a separator),
    /// encoders start with CLS instead.</summary>
    internal abstract bool FormatPrependsBos { get; }

    /// <summary>The special ids the format defines by itself; the loader overrides them from the configs.
    /// By default the usual spellings, where the vocabulary has them.</summary>
    internal virtual SpecialTokenIds FormatSpecials() => new(
        First("<s>", "<|begin_of_text|>", "<bos>", "<|startoftext|>"),
        First("</s>", "<|end_of_text|>", "<eos>", "<|endoftext|>"),
        First("[CLS]", "<cls>"), First("[SEP]", "<sep>"), First("[PAD]", "<pad>"), First("<unk>", "[UNK]", "<|unk|>"));

    private protected int? First(params string[] names)
    {
        foreach (string n in names) if (TokenToId(n) is int id) return id;
        return null;
    }

    /// <summary>Throws when <paramref name="id"/> is not a token id of this tokenizer.</summary>
    private protected void CheckId(int id)
    {
        if ((uint)id >= (uint)VocabSize) throw new ArgumentOutOfRangeException(nameof(id), id, $"not a token id of {Source} (vocabulary {VocabSize})");
    }

    public override string ToString() => $"{Kind} tokenizer {Source} (vocabulary {VocabSize})";
}

/// <summary>The tokenizer kinds, as <see cref="TextTokenizer.Kind"/> returns them.</summary>
public static class TokenizerKinds
{
    /// <summary>Hugging Face tokenizer.json, byte-level BPE (GPT-2, Llama 3, Qwen).</summary>
    public const string HfByteLevelBpe = "hf-bpe-bytelevel";
    /// <summary>Hugging Face tokenizer.json, BPE over "▁"-escaped text with byte fallback (Llama 2, Mistral).</summary>
    public const string HfSentencePieceBpe = "hf-bpe-sentencepiece";
    /// <summary>Hugging Face tokenizer.json, WordPiece (BERT).</summary>
    public const string HfWordPiece = "hf-wordpiece";
    /// <summary>Hugging Face tokenizer.json, WordLevel (whole words; toy and test models).</summary>
    public const string HfWordLevel = "hf-wordlevel";
    /// <summary>A SentencePiece tokenizer.model (BPE or Unigram).</summary>
    public const string SentencePiece = "sentencepiece";
    /// <summary>A WordPiece vocab.txt (BERT).</summary>
    public const string WordPiece = "wordpiece";
    /// <summary>A tiktoken ranks file (*.tiktoken).</summary>
    public const string Tiktoken = "tiktoken";
    /// <summary>llama2.c's tokenizer.bin.</summary>
    public const string Llama2c = "llama2c";
}

/// <summary>Special token ids; null where the tokenizer does not define the token.</summary>
public sealed record SpecialTokenIds(int? Bos, int? Eos, int? Cls, int? Sep, int? Pad, int? Unk)
{
    public static SpecialTokenIds None { get; } = new(null, null, null, null, null, null);

    /// <summary>All defined ids, duplicates removed.</summary>
    public IReadOnlyList<int> All => new[] { Bos, Eos, Cls, Sep, Pad, Unk }.Where(i => i is not null).Select(i => i!.Value).Distinct().ToArray();
}

/// <summary>Whether a tokenizer prepends BOS by itself, and which fact said so (for reports).</summary>
public sealed record BosConvention(bool PrependsBos, string Reason);
