using OnnxOutlierTools.Calibration.Text;

namespace OnnxOutlierTools.Tests.Calibration;

/// <summary>Hugging Face tokenizer.json files of the fixtures, against published ids and against Tokenizers.js
/// (an independent implementation; reference files in Data/).</summary>
public sealed class TokenizerTestsHf
{

    [Fact]
    public void Gpt2GivesThePublishedIds()
    {
        var t = TokenizerTestData.Gpt2;
        Assert.Equal(TokenizerKinds.HfByteLevelBpe, t.Kind);
        Assert.Equal([15496, 995], t.Encode("Hello world"));
        Assert.Equal([262], t.Encode(" the"));
        Assert.Equal(50256, t.TokenToId("<|endoftext|>"));
        // CodeGen's copy of GPT-2's vocabulary: 50257 tokens plus 38 whitespace-run added tokens.
        Assert.Equal(50295, t.VocabSize);
    }

    [Fact]
    public void Gpt2MatchesTokenizersJsOnEveryReferenceText()
    {
        var t = TokenizerTestData.Gpt2;
        var cases = TokenizerTestData.Cases("gpt2-tokenizer-json.expected.json");
        Assert.True(cases.Count > 30);
        foreach (var c in cases) Assert.True(c.Ids.SequenceEqual(t.Encode(c.Text)), $"text {Show(c.Text)}: expected [{string.Join(",", c.Ids.Take(20))}...], got [{string.Join(",", t.Encode(c.Text).Take(20))}...]");
    }

    [Fact]
    public void Gpt2SpecialsAndBosConvention()
    {
        var t = TokenizerTestData.Gpt2;
        // tokenizer_config.json: bos = eos = unk = <|endoftext|>; GPT-2 does not prepend it.
        Assert.Equal(50256, t.Specials.Bos);
        Assert.Equal(50256, t.Specials.Eos);
        Assert.Equal(50256, t.Specials.Unk);
        Assert.Null(t.Specials.Cls);
        Assert.False(t.BosConvention.PrependsBos);
        Assert.Contains("hf-bpe-bytelevel convention", t.BosConvention.Reason);
        Assert.False(BosPolicy.Resolve(BosMode.Auto, t).Prepend);
        var on = BosPolicy.Resolve(BosMode.On, t);
        Assert.True(on.Prepend);
        Assert.Equal(50256, on.BosId);
    }

    [Fact]
    public void Gpt2DisplayTextOfTokens()
    {
        var t = TokenizerTestData.Gpt2;
        Assert.Equal(" the", t.Decode(262));
        Assert.Equal("Hello", t.Decode(15496));
        Assert.Equal("\n", t.Decode(198));
        Assert.Equal("<|endoftext|>", t.Decode(50256));
        Assert.Equal("   ", t.Decode(50285));
        // "🦙" is F0 9F A6 99: GPT-2 has "ĠðŁ" (space, F0, 9F) as one token, an incomplete character.
        int[] llama = t.Encode(" 🦙");
        Assert.Equal(" <0xF0><0x9F>", t.Decode(llama[0]));
        Assert.True(t.StartsWord(262));     // " the"
        Assert.False(t.StartsWord(15496));  // "Hello" without a space reads as a continuation
    }

    [Fact]
    public void LlamaGivesThePublishedIds()
    {
        var t = TokenizerTestData.Llama;
        Assert.Equal(TokenizerKinds.HfSentencePieceBpe, t.Kind);
        Assert.Equal(32000, t.VocabSize);
        Assert.Equal([15043, 3186], t.Encode("Hello world"));
        Assert.Equal(1, t.Specials.Bos);
        Assert.Equal(2, t.Specials.Eos);
        Assert.Equal(0, t.Specials.Unk);
        Assert.Equal("<s>", t.Decode(1));
        Assert.Equal(" Hello", t.Decode(15043));
    }

    [Fact]
    public void LlamaByteFallbackUsesTheVocabularysByteTokens()
    {
        var t = TokenizerTestData.Llama;
        byte[] utf8 = System.Text.Encoding.UTF8.GetBytes("🦙");
        Assert.Equal([0xF0, 0x9F, 0xA6, 0x99], utf8);
        // The expected ids come from the vocabulary itself: the byte pieces <0xF0> ... <0x99>.
        int[] byteIds = utf8.Select(b => t.TokenToId($"<0x{b:X2}>") ?? -1).ToArray();
        Assert.Equal([243, 162, 169, 156], byteIds); // byte + 3, Llama 2's layout
        int[] ids = t.Encode("🦙");
        Assert.Equal(t.TokenToId("\u2581"), ids[0]); // the "▁" prefix stands alone: "▁🦙" is not a piece
        Assert.Equal(byteIds, ids[1..]);
        Assert.Equal("<0xF0>", t.Decode(243));
        Assert.Equal("\n", t.Decode(t.TokenToId("<0x0A>")!.Value));
        Assert.Equal([13], t.Encode("\n")[1..]); // <0x0A> is id 13
    }

    [Fact]
    public void LlamaMatchesTokenizersJsOnEveryReferenceText()
    {
        var t = TokenizerTestData.Llama;
        var cases = TokenizerTestData.Cases("llama-tokenizer-json.expected.json");
        foreach (var c in cases)
        {
            Assert.True(c.Ids.SequenceEqual(t.Encode(c.Text)), $"text {Show(c.Text)}: expected [{string.Join(",", c.Ids.Take(20))}...], got [{string.Join(",", t.Encode(c.Text).Take(20))}...]");
            // The tokenizer's own encoding with specials is BOS + the same ids, which is what --bos auto reproduces.
            Assert.Equal(c.IdsWithSpecials, new[] { 1 }.Concat(c.Ids).ToArray());
        }
    }

    [Fact]
    public void LlamaBosConventionComesFromTokenizerConfig()
    {
        var t = TokenizerTestData.Llama;
        Assert.True(t.BosConvention.PrependsBos);
        Assert.Equal("tokenizer_config.json add_bos_token = true", t.BosConvention.Reason);
        var auto = BosPolicy.Resolve(BosMode.Auto, t);
        Assert.True(auto.Prepend);
        Assert.Equal(1, auto.BosId);
        Assert.False(BosPolicy.Resolve(BosMode.Off, t).Prepend);
    }

    [Fact]
    public void ModelConfigIdsThatDisagreeAreNotedAndTheTokenizerWins()
    {
        // genai_config.json of the GQA fixture says bos_token_id 0 (a tiny random export); the tokenizer says <s> = 1.
        var t = TokenizerLocator.Load(null, Fixtures.Export("llama-genai-gqa-fp32", "model.onnx"));
        Assert.Equal(1, t.Specials.Bos);
        Assert.Contains(t.Notes, n => n.Contains("genai_config.json gives BOS id 0") && n.Contains("using the tokenizer's"));
    }

    [Fact]
    public void WordLevelTokenizerJsonOfTheModernFixture()
    {
        var t = TokenizerLocator.LoadFile(Fixtures.Path("exports-modern", "llama-tensorscatter-mobius", "tokenizer.json"));
        Assert.Equal(TokenizerKinds.HfWordLevel, t.Kind);
        Assert.Equal(32, t.VocabSize);
        // Tokenizers.js: "world  the  quick  brown, jumps" -> [5, 6, 7, 8, 15, 10].
        Assert.Equal([5, 6, 7, 8, 15, 10], t.Encode("world  the  quick  brown, jumps"));
        Assert.Equal([1, 4], t.Encode("zzqx hello")); // unk_token <unk> = 1
        Assert.Equal(2, t.Specials.Bos);
        Assert.True(t.BosConvention.PrependsBos); // its template starts with <bos>
        Assert.Contains("template", t.BosConvention.Reason);
    }

    [Theory]
    [InlineData("llama3-style", TokenizerKinds.HfByteLevelBpe)]
    [InlineData("metaspace-first", TokenizerKinds.HfSentencePieceBpe)]
    public void OtherPipelinesMatchTokenizersJs(string name, string kind)
    {
        using var doc = System.Text.Json.JsonDocument.Parse(File.ReadAllBytes(TokenizerTestData.Path("pipeline-variants.expected.json")));
        var variant = doc.RootElement.GetProperty("variants").EnumerateArray().Single(v => v.GetProperty("name").GetString() == name);
        var json = System.Text.Json.Nodes.JsonNode.Parse(File.ReadAllText(Fixtures.Path(variant.GetProperty("base").GetString()!.Split('/'))))!.AsObject();
        foreach (var o in variant.GetProperty("override").EnumerateObject())
        {
            var value = System.Text.Json.Nodes.JsonNode.Parse(o.Value.GetRawText());
            if (o.Name == "model_ignore_merges") json["model"]!["ignore_merges"] = value;
            else json[o.Name] = value;
        }
        using var temp = new TempFolder("pipeline-" + name);
        File.WriteAllText(temp.Path("tokenizer.json"), json.ToJsonString());
        var t = TokenizerLocator.LoadFile(temp.Path("tokenizer.json"));
        Assert.Equal(kind, t.Kind);
        foreach (var c in variant.GetProperty("cases").EnumerateArray())
        {
            string text = c.GetProperty("text").GetString()!;
            int[] expected = c.GetProperty("ids").EnumerateArray().Select(e => e.GetInt32()).ToArray();
            int[] got = t.Encode(text);
            Assert.True(expected.SequenceEqual(got), $"{name}: text {Show(text)}: expected [{string.Join(",", expected.Take(24))}...], got [{string.Join(",", got.Take(24))}...]");
        }
    }

    private static string Show(string text) => System.Text.Json.JsonSerializer.Serialize(text.Length > 60 ? text[..60] + "..." : text);
}
