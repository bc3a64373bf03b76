using OnnxOutlierTools.Calibration.Text;

namespace OnnxOutlierTools.Tests.Calibration;

/// <summary>Finding the tokenizer beside a model, --tokenizer files and folders, and one-line errors.</summary>
public sealed class TokenizerTestsLocator
{
    [Fact]
    public void FindsTheTokenizerBesideTheModelAndNotesConfigDisagreements()
    {
        string model = Fixtures.Export("gpt2-ort-fused-fp32", "past.onnx");
        Assert.Equal(Fixtures.Export("gpt2-ort-fused-fp32", "tokenizer.json"), TokenizerLocator.Find(null, model));
        var t = TokenizerLocator.Load(null, model);
        Assert.Equal(TokenizerKinds.HfByteLevelBpe, t.Kind);
        // The tiny random export's genai_config.json says bos 98 in a 1000-token model; the tokenizer's <|endoftext|> wins.
        Assert.Equal(50256, t.Specials.Bos);
        Assert.Contains(t.Notes, n => n.Contains("genai_config.json gives BOS id 98") && n.Contains("<|endoftext|>"));
    }

    [Fact]
    public void OnnxSubfolderLayoutSearchesTheParentAndReadsItsConfig()
    {
        using var temp = new TempFolder("locator-onnx");
        string onnx = temp.Folder(System.IO.Path.Combine("repo", "onnx"));
        string model = System.IO.Path.Combine(onnx, "model.onnx");
        File.WriteAllText(model, "not read by the locator");
        File.Copy(TokenizerTestData.R50kBasePath, temp.Path("repo", "r50k_base.tiktoken"));
        File.WriteAllText(temp.Path("repo", "config.json"), """{"model_type": "gpt2", "bos_token_id": 50256, "eos_token_id": 50256}""");
        Assert.Equal([onnx, temp.Path("repo")], TokenizerLocator.SearchFolders(model));
        var t = TokenizerLocator.Load(null, model);
        Assert.Equal(TokenizerKinds.Tiktoken, t.Kind);
        Assert.Equal(temp.Path("repo", "r50k_base.tiktoken"), t.Source);
        // tiktoken defines no BOS: the model's config.json fills it, and says so; GPT-2 still does not prepend it.
        Assert.Equal(50256, t.Specials.Bos);
        Assert.Contains(t.Notes, n => n == "BOS id 50256 from config.json (the tokenizer defines none)");
        Assert.False(BosPolicy.Resolve(BosMode.Auto, t).Prepend);
        Assert.True(BosPolicy.Resolve(BosMode.On, t).Prepend);
    }

    [Fact]
    public void TokenizerFolderAndFileArguments()
    {
        using var temp = new TempFolder("locator-folder");
        File.Copy(Fixtures.Path("llama2c", "tok512.bin"), temp.Path("tok512.bin"));
        Assert.Equal(temp.Path("tok512.bin"), TokenizerLocator.Find(temp.FullPath, "/nowhere/model.onnx"));
        Assert.Equal(TokenizerKinds.Llama2c, TokenizerLocator.Load(temp.FullPath, "/nowhere/model.onnx").Kind);
        // A file argument is used as is, wherever the model is.
        Assert.Equal(MiniLm.VocabPath, TokenizerLocator.Find(MiniLm.VocabPath, Fixtures.Export("gpt2-ort-fused-fp32", "past.onnx")));
        // tokenizer.json comes before the other names.
        File.Copy(Fixtures.Export("llama-genai-gqa-fp32", "tokenizer.json"), temp.Path("tokenizer.json"));
        Assert.Equal(temp.Path("tokenizer.json"), TokenizerLocator.Find(temp.FullPath, "/nowhere/model.onnx"));
    }

    [Fact]
    public void NothingFoundIsOneLineNamingWhereItLooked()
    {
        string model = Fixtures.Export("llama-torch-nopast", "model.onnx");
        var ex = Assert.Throws<TokenizerNotFoundException>(() => TokenizerLocator.Load(null, model));
        Assert.DoesNotContain('\n', ex.Message);
        Assert.StartsWith(model + ": no tokenizer found (looked in " + System.IO.Path.GetDirectoryName(model), ex.Message);
        Assert.Contains("tokenizer.json, tokenizer.model, vocab.txt, *.tiktoken, tokenizer.bin, tok*.bin", ex.Message);
        Assert.Contains("--tokenizer", ex.Message);

        var noFolder = Assert.Throws<TokenizerNotFoundException>(() => TokenizerLocator.Find(null, "/no/such/folder/model.onnx"));
        Assert.StartsWith("/no/such/folder/model.onnx: no tokenizer found (looked in /no/such/folder for", noFolder.Message);
        var missing = Assert.Throws<TokenizerNotFoundException>(() => TokenizerLocator.Find("/no/such/tokenizer.json", model));
        Assert.Equal("/no/such/tokenizer.json: does not exist", missing.Message);
        using var temp = new TempFolder("locator-empty");
        var empty = Assert.Throws<TokenizerNotFoundException>(() => TokenizerLocator.Find(temp.FullPath, model));
        Assert.StartsWith(temp.FullPath + ": no tokenizer in this folder", empty.Message);
    }

    [Fact]
    public void TwoCandidatesOfOnePatternAreRefusedByName()
    {
        using var temp = new TempFolder("locator-two");
        File.Copy(TokenizerTestData.R50kBasePath, temp.Path("a.tiktoken"));
        File.Copy(TokenizerTestData.R50kBasePath, temp.Path("b.tiktoken"));
        var ex = Assert.Throws<TokenizerNotFoundException>(() => TokenizerLocator.Find(temp.FullPath, "/nowhere/model.onnx"));
        Assert.Contains("holds 2 *.tiktoken files (a.tiktoken, b.tiktoken); pass the one to use with --tokenizer", ex.Message);
    }

    [Fact]
    public void BadTokenizerFilesGiveOneLineNamingTheFile()
    {
        using var temp = new TempFolder("locator-bad");
        File.WriteAllText(temp.Path("tokenizer.json"), "{ not json");
        var json = Assert.Throws<CalibrationInputException>(() => TokenizerLocator.LoadFile(temp.Path("tokenizer.json")));
        Assert.StartsWith(temp.Path("tokenizer.json") + ": is not valid JSON", json.Message);
        Assert.DoesNotContain('\n', json.Message);

        File.WriteAllText(temp.Path("tokenizer.json"), """{"model": {"type": "Unigram", "vocab": [["a", 0.0]]}}""");
        var unigram = Assert.Throws<CalibrationInputException>(() => TokenizerLocator.LoadFile(temp.Path("tokenizer.json")));
        Assert.Contains("model type \"Unigram\" is not supported", unigram.Message);

        File.WriteAllText(temp.Path("tokenizer.json"), """{"model": {"type": "BPE", "vocab": {"a": 0, "b": 1, "ab": 2}, "merges": ["a b"]}, "pre_tokenizer": {"type": "Whitespace"}}""");
        var pipeline = Assert.Throws<CalibrationInputException>(() => TokenizerLocator.LoadFile(temp.Path("tokenizer.json")));
        Assert.Contains("is not supported by this tool's tokenizer.json reader", pipeline.Message);

        File.WriteAllBytes(temp.Path("tokenizer.model"), [1, 2, 3, 4, 5]);
        var sp = Assert.Throws<CalibrationInputException>(() => TokenizerLocator.LoadFile(temp.Path("tokenizer.model")));
        Assert.StartsWith(temp.Path("tokenizer.model") + ": ", sp.Message);

        File.WriteAllBytes(temp.Path("tokenizer.bin"), [1, 0]);
        var bin = Assert.Throws<CalibrationInputException>(() => TokenizerLocator.LoadFile(temp.Path("tokenizer.bin")));
        Assert.StartsWith(temp.Path("tokenizer.bin") + ": ", bin.Message);

        File.WriteAllText(temp.Path("tokenizer_config.json"), "[1, 2]");
        File.Copy(Fixtures.Path("llama2c", "tok512.bin"), temp.Path("tok512.bin"));
        var config = Assert.Throws<CalibrationInputException>(() => TokenizerLocator.LoadFile(temp.Path("tok512.bin")));
        Assert.Equal(temp.Path("tokenizer_config.json") + ": is not a JSON object", config.Message);
    }
}
