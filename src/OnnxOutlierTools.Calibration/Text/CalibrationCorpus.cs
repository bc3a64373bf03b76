namespace OnnxOutlierTools.Calibration.Text;

/// <summary><c>--seq-len</c> and <c>--max-tokens</c>: the window length and the total number of tokens fed
/// (specials included; null: the whole input).</summary>
public sealed record CorpusSettings(int SeqLen, int? MaxTokens = null)
{
    public void Validate(int minimumSeqLen)
    {
        if (SeqLen < minimumSeqLen) throw new CalibrationInputException("--seq-len", $"{SeqLen} is too short: at least {minimumSeqLen} here");
        if (MaxTokens is int m && m < 1) throw new CalibrationInputException("--max-tokens", $"{m} must be positive");
    }
}

/// <summary>
/// The calibration input as windows. Decoders: the token stream cut into runs of <c>seq-len</c> ids, each
/// starting with BOS when the <see cref="BosDecision"/> says so (BOS counts toward the length), the
/// last one short if the input or the token budget ends there; windows never pad. Encoders: [CLS] ...
/// [SEP] segments of whole sentences within a paragraph (<see cref="EncoderSegmenter"/>).
/// </summary>
public sealed class CalibrationCorpus
{
    private CalibrationCorpus(string source, IReadOnlyList<CalibrationWindow> windows, CorpusSettings settings, BosDecision? bos, int availableTokens, bool budgetReached)
    {
        Source = source;
        Windows = windows;
        Settings = settings;
        Bos = bos;
        AvailableTokens = availableTokens;
        BudgetReached = budgetReached;
    }

    /// <summary>The text or ids file the windows came from.</summary>
    public string Source { get; }
    public IReadOnlyList<CalibrationWindow> Windows { get; }
    public CorpusSettings Settings { get; }
    /// <summary>The BOS choice for decoder windows; null for encoder segments.</summary>
    public BosDecision? Bos { get; }
    /// <summary>Tokens (without added specials) the input was encoded to; with a budget, possibly only a
    /// prefix of the text was encoded.</summary>
    public int AvailableTokens { get; }
    /// <summary>The windows stop because <see cref="CorpusSettings.MaxTokens"/> was reached.</summary>
    public bool BudgetReached { get; }

    /// <summary>Ids fed in all, specials included.</summary>
    public long TotalTokens => Windows.Sum(w => (long)w.Length);
    public int MaxId => Windows.Max(w => w.Ids.Max());

    /// <summary>Decoder windows from a text file.</summary>
    public static CalibrationCorpus FromTextFile(string path, TextTokenizer tokenizer, CorpusSettings settings, BosDecision bos) =>
        FromText(CorpusText.Read(path), path, tokenizer, settings, bos);

    /// <summary>Decoder windows from a text. With a token budget only as many leading paragraphs are
    /// encoded as the budget needs (a prefix cut at a blank line, so nothing is cut mid-paragraph).</summary>
    public static CalibrationCorpus FromText(string text, string source, TextTokenizer tokenizer, CorpusSettings settings, BosDecision bos)
    {
        ArgumentNullException.ThrowIfNull(text);
        settings.Validate(bos.Prepend ? 2 : 1);
        if (text.Trim().Length == 0) throw new CalibrationInputException(source, "is empty: no text to calibrate on");
        int[] ids = EncodePrefix(text, tokenizer, settings.MaxTokens);
        if (ids.Length == 0) throw new CalibrationInputException(source, $"encodes to no tokens with {tokenizer.Source}");
        return Decoder(source, [ids], settings, bos);
    }

    /// <summary>Decoder windows from an ids file (<see cref="IdsFile"/>).</summary>
    public static CalibrationCorpus FromIdsFile(string path, CorpusSettings settings, BosDecision bos) => FromIds(IdsFile.Read(path), path, settings, bos);

    public static CalibrationCorpus FromIds(IReadOnlyList<int[]> sequences, string source, CorpusSettings settings, BosDecision bos)
    {
        settings.Validate(bos.Prepend ? 2 : 1);
        if (sequences.Count == 0 || sequences.All(s => s.Length == 0)) throw new CalibrationInputException(source, "holds no token ids");
        return Decoder(source, sequences, settings, bos);
    }

    /// <summary>Encoder segments from a text file (the caller knows the model is an encoder).</summary>
    public static CalibrationCorpus EncoderSegmentsFromTextFile(string path, TextTokenizer tokenizer, CorpusSettings settings) =>
        EncoderSegments(CorpusText.Read(path), path, tokenizer, settings);

    public static CalibrationCorpus EncoderSegments(string text, string source, TextTokenizer tokenizer, CorpusSettings settings)
    {
        ArgumentNullException.ThrowIfNull(text);
        settings.Validate(3);
        if (text.Trim().Length == 0) throw new CalibrationInputException(source, "is empty: no text to calibrate on");
        var (windows, available, budget) = EncoderSegmenter.Build(text, source, tokenizer, settings);
        return new CalibrationCorpus(source, windows, settings, null, available, budget);
    }

    /// <summary>Refuses a window length above the model's context. <paramref name="contextSource"/> says where
    /// the limit came from ("genai_config.json context_length", "position embedding rows").</summary>
    public static void ValidateSeqLen(int seqLen, int? contextLength, string model, string contextSource)
    {
        if (contextLength is int context && seqLen > context)
            throw new CalibrationInputException(model, $"--seq-len {seqLen} exceeds the model's context of {context} tokens ({contextSource})");
    }

    /// <summary>The first id the model cannot embed (a tokenizer larger than the model's embedding rows), or
    /// null when all fit.</summary>
    public (int Window, int Position, int Id)? FirstIdOutside(int embeddingRows)
    {
        foreach (var w in Windows)
            for (int i = 0; i < w.Ids.Length; i++)
                if (w.Ids[i] >= embeddingRows) return (w.Index, i, w.Ids[i]);
        return null;
    }

    /// <summary>Throws when an id is outside the model's <paramref name="embeddingRows"/>.</summary>
    public void ValidateIds(int embeddingRows, string model)
    {
        if (FirstIdOutside(embeddingRows) is var (window, position, id))
            throw new CalibrationInputException(model, $"token id {id} (window {window}, position {position} of {Source}) is outside the model's {embeddingRows} embedding rows; the tokenizer does not match the model");
    }

    /// <summary>The ids of the text, or with a budget of a prefix cut at a blank line that yields at least <paramref name="maxTokens"/> ids
    /// (the whole text when it has fewer).</summary>
    public static int[] EncodePrefix(string text, TextTokenizer tokenizer, int? maxTokens)
    {
        if (maxTokens is not int budget) return tokenizer.Encode(text);
        // Grow a blank-line-cut prefix until it yields enough tokens (a token is rarely under 2 characters).
        int length = (int)Math.Min(text.Length, Math.Max(4096L, budget * 8L));
        while (true)
        {
            int cut = length >= text.Length ? text.Length : CutAtBlankLine(text, length);
            int[] ids = tokenizer.Encode(text[..cut]);
            if (cut == text.Length || ids.Length >= budget) return ids;
            length = (int)Math.Min(text.Length, length * 2L);
        }
    }

    private static int CutAtBlankLine(string text, int length)
    {
        int at = text.IndexOf("\n\n", length, StringComparison.Ordinal);
        return at < 0 ? text.Length : at + 2;
    }

    private static CalibrationCorpus Decoder(string source, IReadOnlyList<int[]> sequences, CorpusSettings settings, BosDecision bos)
    {
        if (bos.Prepend && bos.BosId is null) throw new ArgumentException("a BOS decision that prepends needs a BOS id", nameof(bos));
        var windows = new List<CalibrationWindow>();
        long left = settings.MaxTokens ?? long.MaxValue;
        bool budgetReached = false;
        for (int s = 0; s < sequences.Count && !budgetReached; s++)
        {
            int[] seq = sequences[s];
            int pos = 0;
            while (pos < seq.Length)
            {
                if (left == 0) { budgetReached = true; break; }
                bool add = bos.Prepend && seq[pos] != bos.BosId;
                int room = (int)Math.Min(settings.SeqLen, left);
                int take = Math.Min(seq.Length - pos, room - (add ? 1 : 0));
                if (take <= 0) { budgetReached = true; break; } // only the BOS would fit
                var ids = new int[take + (add ? 1 : 0)];
                if (add) ids[0] = bos.BosId!.Value;
                Array.Copy(seq, pos, ids, add ? 1 : 0, take);
                windows.Add(new CalibrationWindow(windows.Count, ids, bos.Prepend, WindowKind.Decoder, s, pos));
                pos += take;
                left -= ids.Length;
            }
            if (left == 0 && (pos < seq.Length || s + 1 < sequences.Count)) budgetReached = true;
        }
        return new CalibrationCorpus(source, windows, settings, bos, sequences.Sum(q => q.Length), budgetReached);
    }
}
