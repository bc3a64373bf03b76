using OnnxOutlierTools.Calibration.Text;

namespace OnnxOutlierTools.Tests.Calibration;

/// <summary>Calibration windows, BOS handling, encoder segments, the --ids file and the input errors, on the
/// fixture texts with real tokenizers.</summary>
public sealed class TokenizerTestsCorpus
{
    private static string Stories => Fixtures.Path("text", "tinystories-sample.txt");
    private static string Prose => Fixtures.Path("text", "prose-sample.txt");

    [Fact]
    public void LlamaWindowsStartWithBosAndFillTheBudget()
    {
        var t = TokenizerTestData.Llama;
        var bos = BosPolicy.Resolve(BosMode.Auto, t);
        var corpus = CalibrationCorpus.FromTextFile(Stories, t, new CorpusSettings(64, 1000), bos);
        // 1000 tokens = 15 windows of 64 and a last one of 40, each with BOS first (63 + 39 text tokens).
        Assert.Equal(16, corpus.Windows.Count);
        Assert.All(corpus.Windows.SkipLast(1), w => Assert.Equal(64, w.Length));
        Assert.Equal(40, corpus.Windows[^1].Length);
        Assert.All(corpus.Windows, w => { Assert.Equal(1, w.Ids[0]); Assert.True(w.HasBos); Assert.Equal(WindowKind.Decoder, w.Kind); });
        Assert.Equal(1000, corpus.TotalTokens);
        Assert.True(corpus.BudgetReached);
        // The text tokens are the text's own encoding, in order, none skipped or repeated.
        int[] all = t.Encode(File.ReadAllText(Stories));
        int[] fed = corpus.Windows.SelectMany(w => w.Ids.Skip(1)).ToArray();
        Assert.Equal(all[..fed.Length], fed);
        Assert.Equal(Enumerable.Range(0, 16).Select(i => i * 63), corpus.Windows.Select(w => w.SourceStart));
    }

    [Fact]
    public void Gpt2WindowsHaveNoBosUnlessAsked()
    {
        var t = TokenizerTestData.Gpt2;
        var auto = CalibrationCorpus.FromTextFile(Stories, t, new CorpusSettings(128, 512), BosPolicy.Resolve(BosMode.Auto, t));
        Assert.Equal(4, auto.Windows.Count);
        Assert.All(auto.Windows, w => { Assert.Equal(128, w.Length); Assert.False(w.HasBos); });
        Assert.Equal(t.Encode(File.ReadAllText(Stories))[..512], auto.Windows.SelectMany(w => w.Ids).ToArray());
        Assert.Equal("--bos auto: hf-bpe-bytelevel convention: no BOS (GPT-2-style BOS = EOS is a separator; encoders start with CLS)", auto.Bos!.Reason);

        var on = CalibrationCorpus.FromTextFile(Stories, t, new CorpusSettings(128, 512), BosPolicy.Resolve(BosMode.On, t));
        Assert.All(on.Windows, w => { Assert.Equal(50256, w.Ids[0]); Assert.True(w.HasBos); });
    }

    [Fact]
    public void WithoutABudgetTheWholeTextIsFedAndTheLastWindowKeepsItsLength()
    {
        var t = TokenizerLocator.LoadFile(Fixtures.Path("llama2c", "tok512.bin"));
        string text = string.Join("\n\n", CorpusText.Paragraphs(File.ReadAllText(Stories)).Take(5));
        var corpus = CalibrationCorpus.FromText(text, "stories", t, new CorpusSettings(100), BosPolicy.Resolve(BosMode.Auto, t));
        int[] all = t.Encode(text);
        Assert.False(corpus.BudgetReached);
        Assert.Equal(all.Length, corpus.AvailableTokens);
        Assert.Equal(all, corpus.Windows.SelectMany(w => w.Ids.Skip(1)).ToArray());
        Assert.All(corpus.Windows.SkipLast(1), w => Assert.Equal(100, w.Length));
        Assert.Equal(all.Length - 99 * (corpus.Windows.Count - 1) + 1, corpus.Windows[^1].Length);
        Assert.All(corpus.Windows, w => Assert.Equal(1, w.Ids[0]));
    }

    [Fact]
    public void IdsFileFlatAndNested()
    {
        using var temp = new TempFolder("ids");
        File.WriteAllText(temp.Path("flat.json"), "[1, 15043, 3186, 29889, 13, 4013]");
        var flat = CalibrationCorpus.FromIdsFile(temp.Path("flat.json"), new CorpusSettings(4), BosDecision.None("test"));
        Assert.Equal([[1, 15043, 3186, 29889], [13, 4013]], flat.Windows.Select(w => w.Ids));

        // Nested: one sequence each, windows never span two; BOS on prepends where a window lacks it, never twice.
        File.WriteAllText(temp.Path("nested.json"), "[[1, 10, 11, 12, 13], [20, 21]]");
        var bos = new BosDecision(true, 1, "test");
        var nested = CalibrationCorpus.FromIdsFile(temp.Path("nested.json"), new CorpusSettings(3), bos);
        Assert.Equal([[1, 10, 11], [1, 12, 13], [1, 20, 21]], nested.Windows.Select(w => w.Ids));
        Assert.Equal([0, 0, 1], nested.Windows.Select(w => w.Sequence));
        Assert.Equal([0, 3, 0], nested.Windows.Select(w => w.SourceStart));
        Assert.Equal(21, nested.MaxId);

        var budget = CalibrationCorpus.FromIdsFile(temp.Path("nested.json"), new CorpusSettings(3, 5), bos);
        Assert.Equal([[1, 10, 11], [1, 12]], budget.Windows.Select(w => w.Ids));
        Assert.True(budget.BudgetReached);
        Assert.False(BosPolicy.Resolve(BosMode.Auto, null, (1, "config.json")).Prepend); // ids are taken as given
        Assert.True(BosPolicy.Resolve(BosMode.On, null, (1, "config.json")).Prepend);
    }

    [Theory]
    [InlineData("[]", "holds no token ids (an empty array)")]
    [InlineData("{\"ids\": [1]}", "must be a JSON array of token ids, or an array of such arrays (one sequence each)")]
    [InlineData("[1, \"two\", 3]", "position 1 holds string, not a token id (a non-negative 32-bit integer)")]
    [InlineData("[1, -5]", "position 1 holds -5, not a token id (a non-negative 32-bit integer)")]
    [InlineData("[1, 2.5]", "position 1 holds 2.5, not a token id (a non-negative 32-bit integer)")]
    [InlineData("[[1, 2], []]", "sequence 1 is empty")]
    [InlineData("[[1, 2], 3]", "element 1 is Number, not an array: must be a JSON array of token ids, or an array of such arrays (one sequence each)")]
    [InlineData("[[1], [2, 99999999999]]", "sequence 1 position 1 holds 99999999999, not a token id (a non-negative 32-bit integer)")]
    [InlineData("[1, 2", "is not valid JSON")]
    public void BadIdsFilesGiveOneLineNamingTheFile(string content, string problem)
    {
        using var temp = new TempFolder("ids-bad");
        string path = temp.Path("ids.json");
        File.WriteAllText(path, content);
        var ex = Assert.Throws<CalibrationInputException>(() => IdsFile.Read(path));
        Assert.StartsWith($"{path}: {problem}", ex.Message);
        Assert.DoesNotContain('\n', ex.Message);
    }

    [Fact]
    public void EncoderSegmentsAreClsSentencesSep()
    {
        var t = TokenizerTestData.MiniLmVocab;
        var corpus = CalibrationCorpus.EncoderSegmentsFromTextFile(Prose, t, new CorpusSettings(64, 4000));
        Assert.Null(corpus.Bos);
        Assert.True(corpus.BudgetReached);
        Assert.True(corpus.TotalTokens <= 4000 && corpus.TotalTokens > 3900, $"{corpus.TotalTokens} tokens");
        Assert.All(corpus.Windows, w =>
        {
            Assert.Equal(WindowKind.EncoderSegment, w.Kind);
            Assert.Equal(101, w.Ids[0]);
            Assert.Equal(102, w.Ids[^1]);
            Assert.InRange(w.Length, 3, 64);
            Assert.False(w.HasBos);
            Assert.All(w.TokenTypeIds(), v => Assert.Equal(0, v));
            // Never cut inside a word: no segment starts with a "##" continuation.
            Assert.True(t.StartsWord(w.Ids[1]), $"window {w.Index} starts with {t.Decode(w.Ids[1])}");
        });
        // Segments hold whole sentences of one paragraph, in order: their contents are the sentences' encodings.
        var paragraphs = CorpusText.Paragraphs(File.ReadAllText(Prose));
        foreach (var group in corpus.Windows.GroupBy(w => w.Sequence).SkipLast(1))
        {
            int[] expected = CorpusText.Sentences(paragraphs[group.Key]).SelectMany(t.Encode).ToArray();
            Assert.Equal(expected, group.SelectMany(w => w.Ids[1..^1]).ToArray());
        }
        Assert.True(corpus.Windows.Select(w => w.Sequence).Distinct().Count() > 10);
    }

    [Fact]
    public void ALongSentenceIsCutBeforeAWordStart()
    {
        var t = TokenizerTestData.MiniLmVocab;
        // One 60-word sentence with long words (many ## pieces) in 16-id segments.
        string sentence = string.Join(" ", Enumerable.Repeat("unbelievably extraordinary tokenization", 20)) + ".";
        var corpus = CalibrationCorpus.EncoderSegments(sentence, "long", t, new CorpusSettings(16));
        Assert.True(corpus.Windows.Count > 5);
        Assert.All(corpus.Windows, w => Assert.True(t.StartsWord(w.Ids[1]) && w.Length <= 16));
        Assert.Equal(t.Encode(sentence), corpus.Windows.SelectMany(w => w.Ids[1..^1]).ToArray());
    }

    [Fact]
    public void InputErrorsAreOneLine()
    {
        var t = TokenizerTestData.Llama;
        var bos = BosPolicy.Resolve(BosMode.Auto, t);
        using var temp = new TempFolder("corpus-bad");
        File.WriteAllText(temp.Path("empty.txt"), " \n\n  \t\n");
        var empty = Assert.Throws<CalibrationInputException>(() => CalibrationCorpus.FromTextFile(temp.Path("empty.txt"), t, new CorpusSettings(64), bos));
        Assert.Equal(temp.Path("empty.txt") + ": is empty: no text to calibrate on", empty.Message);
        File.WriteAllBytes(temp.Path("latin1.txt"), [0x48, 0x69, 0xE9, 0x21]);
        var latin1 = Assert.Throws<CalibrationInputException>(() => CorpusText.Read(temp.Path("latin1.txt")));
        Assert.Equal(temp.Path("latin1.txt") + ": is not UTF-8 text (invalid bytes at offset 2)", latin1.Message);
        var missing = Assert.Throws<CalibrationInputException>(() => CorpusText.Read(temp.Path("none.txt")));
        Assert.Equal(temp.Path("none.txt") + ": does not exist", missing.Message);

        var context = Assert.Throws<CalibrationInputException>(() => CalibrationCorpus.ValidateSeqLen(4096, 2048, "model.onnx", "genai_config.json context_length"));
        Assert.Equal("model.onnx: --seq-len 4096 exceeds the model's context of 2048 tokens (genai_config.json context_length)", context.Message);
        CalibrationCorpus.ValidateSeqLen(2048, 2048, "model.onnx", "genai_config.json context_length");
        var tooShort = Assert.Throws<CalibrationInputException>(() => CalibrationCorpus.FromText("Hello", "x", t, new CorpusSettings(1), bos));
        Assert.Equal("--seq-len: 1 is too short: at least 2 here", tooShort.Message);
        var budget = Assert.Throws<CalibrationInputException>(() => CalibrationCorpus.FromText("Hello", "x", t, new CorpusSettings(8, 0), bos));
        Assert.Equal("--max-tokens: 0 must be positive", budget.Message);
        var noBos = Assert.Throws<CalibrationInputException>(() => BosPolicy.Resolve(BosMode.On, TokenizerTestData.MiniLmVocab));
        Assert.StartsWith("--bos on: the tokenizer ", noBos.Message);
        var noCls = Assert.Throws<CalibrationInputException>(() => CalibrationCorpus.EncoderSegments("Hello there.", "x", TokenizerTestData.Gpt2, new CorpusSettings(16)));
        Assert.EndsWith("defines no [CLS]/[SEP] tokens, which encoder segments need", noCls.Message);
    }

    [Fact]
    public void IdsBeyondTheModelsEmbeddingAreDetected()
    {
        // gpt2-ort-fused-fp32 is a 1000-token random export: GPT-2's real tokenizer produces ids it cannot embed.
        var t = TokenizerTestData.Gpt2;
        Assert.True(t.VocabSize > 1000);
        var corpus = CalibrationCorpus.FromTextFile(Stories, t, new CorpusSettings(32, 64), BosPolicy.Resolve(BosMode.Auto, t));
        var first = corpus.FirstIdOutside(1000);
        Assert.NotNull(first);
        Assert.True(first.Value.Id >= 1000);
        var ex = Assert.Throws<CalibrationInputException>(() => corpus.ValidateIds(1000, "past.onnx"));
        Assert.StartsWith($"past.onnx: token id {first.Value.Id} (window {first.Value.Window}, position {first.Value.Position} of {Stories})", ex.Message);
        Assert.Null(corpus.FirstIdOutside(t.VocabSize));
    }

    [Fact]
    public void IdsAreCutIntoWindowsWithBos()
    {
        var bos = new BosDecision(true, 1, "test");
        var corpus = CalibrationCorpus.FromIds([[1, .. Enumerable.Range(10, 20)], [1, 50, 51]], "ids", new CorpusSettings(8), bos);
        // 21 ids -> 8, 8 (7 + BOS), 7 (6 + BOS); then 3.
        Assert.Equal([8, 8, 7, 3], corpus.Windows.Select(w => w.Length));
        Assert.All(corpus.Windows, w => Assert.Equal(1, w.Ids[0]));
    }

    [Fact]
    public void SentencesAndParagraphs()
    {
        Assert.Equal(["One.", "Two!", "\u201CThree?\u201D she said.", "Four"], CorpusText.Sentences("One. Two!  \u201CThree?\u201D she said.\nFour"));
        Assert.Equal(["a\nb", "c"], CorpusText.Paragraphs("\n a\nb \n\n\n  \r\n c\n"));
    }
}
