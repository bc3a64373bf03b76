using OnnxOutlierTools.Calibration.Text;
using OnnxOutlierTools.Import;

namespace OnnxOutlierTools.Tests.Calibration;

/// <summary>vocab.txt (MiniLM), llama2.c, tiktoken (r50k_base) and SentencePiece .model tokenizers, each on a
/// real file against an independent reference.</summary>
public sealed class TokenizerTestsFormats
{

    [Fact]
    public void MiniLmVocabGivesBertUncasedIds()
    {
        var t = TokenizerTestData.MiniLmVocab;
        Assert.Equal(TokenizerKinds.WordPiece, t.Kind);
        Assert.Equal(30522, t.VocabSize);
        Assert.Equal([7592, 2088], t.Encode("hello world"));
        Assert.Equal([7592, 2088], t.Encode("Hello World")); // uncased: lower-cased first
        Assert.Contains(t.Notes, n => n.Contains("lower-casing on (the vocabulary has no upper-case token)"));
        Assert.Equal(101, t.Specials.Cls);
        Assert.Equal(102, t.Specials.Sep);
        Assert.Equal(0, t.Specials.Pad);
        Assert.Equal(100, t.Specials.Unk);
        Assert.Null(t.Specials.Bos);
        Assert.Equal("[CLS]", t.Decode(101));
        Assert.Equal("hello", t.Decode(7592));
        Assert.False(t.BosConvention.PrependsBos);
    }

    [Fact]
    public void DoLowerCaseInTokenizerConfigIsHonoured()
    {
        using var temp = new TempFolder("wordpiece-cased");
        File.Copy(MiniLm.VocabPath, temp.Path("vocab.txt"));
        File.WriteAllText(temp.Path("tokenizer_config.json"), """{"do_lower_case": false, "cls_token": "[CLS]"}""");
        var t = TokenizerLocator.LoadFile(temp.Path("vocab.txt"));
        Assert.Contains(t.Notes, n => n.Contains("lower-casing off (tokenizer_config.json do_lower_case)"));
        Assert.Equal([7592, 2088], t.Encode("hello world"));
        Assert.Equal([100], t.Encode("Hello")); // an uncased vocabulary has no "H": [UNK]
    }

    [Fact]
    public void WordPieceContinuationsDoNotStartWords()
    {
        var t = TokenizerTestData.MiniLmVocab;
        int[] ids = t.Encode("tokenization");
        Assert.True(ids.Length >= 2);
        Assert.True(t.StartsWord(ids[0]));
        Assert.All(ids[1..], id => Assert.StartsWith("##", t.Decode(id)));
        Assert.All(ids[1..], id => Assert.False(t.StartsWord(id)));
        Assert.Equal("tokenization", string.Concat(ids.Select(t.Decode)).Replace("##", ""));
    }

    [Fact]
    public void Llama2cTokenizerWrapsTheImportersPortOfRunC()
    {
        string path = Fixtures.Path("llama2c", "tok512.bin");
        var t = TokenizerLocator.LoadFile(path);
        var inner = Llama2cTokenizer.Load(path);
        Assert.Equal(TokenizerKinds.Llama2c, t.Kind);
        Assert.Equal(512, t.VocabSize);
        string[] lines = File.ReadAllText(Fixtures.Path("text", "tinystories-sample.txt")).Split('\n').Where(l => l.Length > 0).Take(40).ToArray();
        foreach (string line in lines) Assert.Equal(inner.Encode(line, bos: false), t.Encode(line));
        Assert.Equal(1, t.Specials.Bos);
        Assert.Equal(2, t.Specials.Eos);
        Assert.Equal("<s>", t.Decode(1));
        Assert.True(t.BosConvention.PrependsBos);
        Assert.True(BosPolicy.Resolve(BosMode.Auto, t).Prepend);
        // Byte tokens are byte + 3: <0x0A> is 13 and shows as a newline.
        Assert.Equal("\n", t.Decode(13));
        // run.c's dummy prefix: the text's first token carries the leading space.
        Assert.StartsWith(" ", t.Decode(t.Encode("Once upon a time")[0]));
        Assert.Equal(" Once upon a time", string.Concat(t.Encode("Once upon a time").Select(t.Decode)));
    }

    [Fact]
    public void TiktokenR50kBaseIsGpt2()
    {
        var t = TokenizerTestData.R50kBase;
        Assert.Equal(TokenizerKinds.Tiktoken, t.Kind);
        Assert.Equal([15496, 995], t.Encode("Hello world"));
        Assert.Equal([262], t.Encode(" the"));
        Assert.Equal(50257, t.VocabSize);
        Assert.Equal(50256, t.TokenToId("<|endoftext|>"));
        Assert.Equal(" the", t.Decode(262));
        Assert.False(t.BosConvention.PrependsBos);
        // r50k_base and GPT-2's tokenizer.json are the same BPE: equal ids on ordinary text.
        var gpt2 = TokenizerTestData.Gpt2;
        string prose = File.ReadAllText(Fixtures.Path("text", "prose-sample.txt"))[..3000].Replace("  ", " ");
        Assert.Equal(gpt2.Encode(prose), t.Encode(prose));
    }

    [Fact]
    public void TiktokenEncodingIsTakenFromTheRankCountWhenTheNameSaysNothing()
    {
        using var temp = new TempFolder("tiktoken");
        string renamed = temp.Path("ranks.tiktoken");
        File.Copy(TokenizerTestData.R50kBasePath, renamed);
        var t = TokenizerLocator.LoadFile(renamed);
        Assert.Contains(t.Notes, n => n.Contains("r50k_base (from the 50256 ranks)"));
        Assert.Equal([15496, 995], t.Encode("Hello world"));
        File.WriteAllLines(temp.Path("few.tiktoken"), ["IQ== 0", "Ig== 1"]);
        var ex = Assert.Throws<CalibrationInputException>(() => TokenizerLocator.LoadFile(temp.Path("few.tiktoken")));
        Assert.Contains("cannot tell which tiktoken encoding these 2 ranks are", ex.Message);
    }

    [Theory]
    [InlineData("sp-bpe")]
    [InlineData("sp-unigram")]
    public void SentencePieceModelMatchesSpmEncode(string model)
    {
        var t = TokenizerLocator.LoadFile(TokenizerTestData.Path(model + ".model"));
        Assert.Equal(TokenizerKinds.SentencePiece, t.Kind);
        Assert.Equal(1000, t.VocabSize);
        var cases = TokenizerTestData.Cases(model + ".expected.json");
        Assert.Equal(38, cases.Count);
        foreach (var c in cases) Assert.True(c.Ids.SequenceEqual(t.Encode(c.Text)), $"{model}: text {c.Text}: expected [{string.Join(",", c.Ids)}], got [{string.Join(",", t.Encode(c.Text))}]");
        Assert.Equal(1, t.Specials.Bos);
        Assert.Equal(2, t.Specials.Eos);
        Assert.Equal(0, t.Specials.Unk);
        Assert.True(t.BosConvention.PrependsBos);
    }

    [Fact]
    public void SentencePieceBpeByteFallbackAndDisplay()
    {
        var t = TokenizerLocator.LoadFile(TokenizerTestData.Path("sp-bpe.model"));
        // spm_encode: "a llama 🦙" ends with ▁ <0xF0> <0x9F> <0xA6> <0x99>.
        int[] ids = t.Encode("🦙");
        Assert.Equal(["<0xF0>", "<0x9F>", "<0xA6>", "<0x99>"], ids[^4..].Select(t.Decode));
        Assert.Equal(" ", t.Decode(ids[0]));
        Assert.Equal("<s>", t.Decode(1));
    }

    [Fact]
    public void WordPieceTokenizerJsonEqualsTheVocabFile()
    {
        // A BERT tokenizer.json written from MiniLM's vocab.txt (its standard BertNormalizer/BertPreTokenizer pipeline).
        using var temp = new TempFolder("wordpiece-json");
        string[] vocab = File.ReadAllLines(MiniLm.VocabPath);
        var json = new System.Text.Json.Nodes.JsonObject
        {
            ["normalizer"] = new System.Text.Json.Nodes.JsonObject { ["type"] = "BertNormalizer", ["lowercase"] = true, ["clean_text"] = true, ["handle_chinese_chars"] = true },
            ["pre_tokenizer"] = new System.Text.Json.Nodes.JsonObject { ["type"] = "BertPreTokenizer" },
            ["model"] = new System.Text.Json.Nodes.JsonObject
            {
                ["type"] = "WordPiece", ["unk_token"] = "[UNK]", ["continuing_subword_prefix"] = "##", ["max_input_chars_per_word"] = 100,
                ["vocab"] = new System.Text.Json.Nodes.JsonObject(vocab.Select((v, i) => new KeyValuePair<string, System.Text.Json.Nodes.JsonNode?>(v, i)).DistinctBy(p => p.Key)),
            },
        };
        File.WriteAllText(temp.Path("tokenizer.json"), json.ToJsonString());
        var fromJson = TokenizerLocator.LoadFile(temp.Path("tokenizer.json"));
        Assert.Equal(TokenizerKinds.HfWordPiece, fromJson.Kind);
        string prose = File.ReadAllText(Fixtures.Path("text", "prose-sample.txt"))[..5000];
        Assert.Equal(TokenizerTestData.MiniLmVocab.Encode(prose), fromJson.Encode(prose));
        Assert.Equal(101, fromJson.Specials.Cls);
    }
}
