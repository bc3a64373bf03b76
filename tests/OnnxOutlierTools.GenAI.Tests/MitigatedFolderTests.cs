using Xunit.Abstractions;

namespace OnnxOutlierTools.GenAI.Tests;

/// <summary>Greedy generation in onnxruntime-genai from an original folder and from each exactly-mitigated folder
/// (<c>mitigate</c> --fold-norms, --smooth 0.5, --sink-bias; the shipped folder with its model, data,
/// genai_config.json and tokenizer files) gives the same tokens. The sink-bias folder is fed the text without
/// BOS, its input contract (the BOS keys and values are in the model). Run on the genai builder's folder and on
/// stories260K imported in the genai-gqa flavour.</summary>
public abstract class MitigatedFolderTests(ITestOutputHelper output) : IClassFixture<ShippedFolders>
{
    protected const string Prompt = "Once upon a time, there was a little girl";
    protected const int NewTokens = 20;

    /// <summary>The original folder (made once per class in <paramref name="folders"/>).</summary>
    protected abstract string Original(ShippedFolders folders);

    public static TheoryData<string> Recipes => [.. ShippedFolders.ExactRecipes.Keys];

    protected void AssertSameTokens(ShippedFolders folders, string recipe)
    {
        string original = Original(folders);
        string mitigated = folders.Mitigate(original, recipe, ShippedFolders.ExactRecipes[recipe]);
        int[] text = GenAiGeneration.Encode(original, Prompt, addSpecialTokens: false);
        GenAiResult expected, actual;
        if (recipe == "sink-bias")
        {
            // The contract: the rewritten model on the text alone equals the original on prefix + text. The prefix is
            // what the model's metadata names (BOS from the folder's config: 0 in the builder fixture's genai_config,
            // whose tokenizer's <s> is 1), read here through ONNX Runtime, not our reader.
            int[] prefix = SinkPrefix(Path.Combine(mitigated, "model.onnx"));
            expected = GenAiGeneration.Greedy(original, [.. prefix, .. text], NewTokens);
            actual = GenAiGeneration.Greedy(mitigated, Prompt, NewTokens, addSpecialTokens: false);
            Assert.Equal(text, actual.PromptIds);
            // mitigate strips BOS from tokenizer.json's template (for runtimes that follow it, as Hugging Face's
            // tokenizers does) and sets add_bos_token false. genai 0.20 follows neither: asked for special tokens it
            // still adds BOS, so genai users feed the text with its default, add_special_tokens off.
            using (var json = System.Text.Json.JsonDocument.Parse(File.ReadAllText(Path.Combine(mitigated, "tokenizer.json"))))
                Assert.DoesNotContain(json.RootElement.GetProperty("post_processor").GetProperty("single").EnumerateArray(), e => e.TryGetProperty("SpecialToken", out _));
            Assert.Equal([1, .. text], GenAiGeneration.Encode(mitigated, Prompt, addSpecialTokens: true)); // what genai does (noted above)
        }
        else
        {
            expected = GenAiGeneration.Greedy(original, Prompt, NewTokens, addSpecialTokens: true);
            actual = GenAiGeneration.Greedy(mitigated, Prompt, NewTokens, addSpecialTokens: true);
            Assert.Equal([1, .. text], actual.PromptIds); // BOS from tokenizer.json's template
        }
        output.WriteLine($"original:  {expected}");
        output.WriteLine($"{recipe}: {actual}");
        Assert.Equal(NewTokens, expected.NewTokens.Length);
        Assert.Equal(expected.NewTokens, actual.NewTokens);
        Assert.Equal(expected.NewText, actual.NewText);
        // genai runs the shipped folder as our own decoder does.
        Assert.Equal(OurGreedy.Run(Path.Combine(mitigated, "model.onnx"), actual.PromptIds, NewTokens), actual.NewTokens);
    }

    /// <summary>For folders that are not exact rewrites (quantized): genai runs the shipped folder and generates
    /// <see cref="NewTokens"/> tokens; the text is reported beside the original's, not asserted equal. Adding a
    /// quantized folder is one line: <c>[Fact] public void Int4() => AssertGeneratesText(folders, QUANTIZED_FOLDER);</c></summary>
    protected void AssertGeneratesText(ShippedFolders folders, string shippedFolder)
    {
        var original = GenAiGeneration.Greedy(Original(folders), Prompt, NewTokens, addSpecialTokens: true);
        var shipped = GenAiGeneration.Greedy(shippedFolder, Prompt, NewTokens, addSpecialTokens: true);
        output.WriteLine($"original: {original}");
        output.WriteLine($"{Path.GetFileName(shippedFolder)}: {shipped}");
        output.WriteLine($"same tokens: {original.NewTokens.Zip(shipped.NewTokens).TakeWhile(p => p.First == p.Second).Count()} of {NewTokens}");
        Assert.Equal(original.PromptIds, shipped.PromptIds);
        Assert.Equal(NewTokens, shipped.NewTokens.Length);
    }

    private static int[] SinkPrefix(string model)
    {
        using var session = new Microsoft.ML.OnnxRuntime.InferenceSession(model);
        string ids = session.ModelMetadata.CustomMetadataMap["onnx_outliers.sink_prefix_ids"];
        return ids.Split(',').Select(int.Parse).ToArray();
    }
}

public sealed class MitigatedBuilderFolderTests(ShippedFolders folders, ITestOutputHelper output) : MitigatedFolderTests(output)
{
    protected override string Original(ShippedFolders f) => Directory.Exists(f.Path("original")) ? f.Path("original") : GenAiFolders.CopyGqaFixture(f.Path("original"));

    [Theory]
    [MemberData(nameof(Recipes))]
    public void GenAiGreedy_MitigatedEqualsOriginal(string recipe) => AssertSameTokens(folders, recipe);

    /// <summary>The folder converted to fp16 (float32 I/O, and float16 I/O with float16 KV caches) still runs in genai.</summary>
    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void GenAi_RunsTheFp16Folder(bool fp16Io) => AssertGeneratesText(folders, folders.ConvertFp16(Original(folders), fp16Io ? "fp16-io" : "fp16", fp16Io));
}

public sealed class MitigatedStoriesFolderTests(ShippedFolders folders, ITestOutputHelper output) : MitigatedFolderTests(output)
{
    protected override string Original(ShippedFolders f) => Directory.Exists(f.Path("original")) ? f.Path("original") : f.ImportStories("original");

    [Theory]
    [MemberData(nameof(Recipes))]
    public void GenAiGreedy_MitigatedEqualsOriginal(string recipe) => AssertSameTokens(folders, recipe);

    /// <summary>The folder converted to fp16 (float32 I/O, and float16 I/O with float16 KV caches) still runs in genai.</summary>
    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void GenAi_RunsTheFp16Folder(bool fp16Io) => AssertGeneratesText(folders, folders.ConvertFp16(Original(folders), fp16Io ? "fp16-io" : "fp16", fp16Io));
}
