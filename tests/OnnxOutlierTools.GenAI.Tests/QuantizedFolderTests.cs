using Xunit.Abstractions;

namespace OnnxOutlierTools.GenAI.Tests;

/// <summary>Quantized folders (<c>quantize</c> in-process, on stories260K imported in the genai-gqa flavour, original and
/// sink-bias mitigated) run in onnxruntime-genai and generate text; the text is reported beside the original's, not
/// asserted equal (quantization changes tokens).</summary>
public sealed class QuantizedStoriesFolderTests(ShippedFolders folders, ITestOutputHelper output) : MitigatedFolderTests(output)
{
    protected override string Original(ShippedFolders f) => Directory.Exists(f.Path("original")) ? f.Path("original") : f.ImportStories("original");

    [Theory]
    [InlineData("int4-rtn", "0")]
    [InlineData("int4-rtn", "4")]
    [InlineData("w8a8-dynamic", "0")]
    [InlineData("w8a8-static", "0")]
    public void GenAi_RunsTheQuantizedFolder(string scheme, string accuracyLevel)
    {
        string name = $"quantized-{scheme}-{accuracyLevel}";
        string output = folders.Path(name);
        if (!Directory.Exists(output))
            ShippedFolders.Run("quantize", Original(folders), "--scheme", scheme, "--accuracy-level", accuracyLevel,
                "--text", OnnxOutlierTools.Tests.Fixtures.Path("text", "tinystories-sample.txt"), "--seq-len", "64", "--max-tokens", "256", "-o", output);
        Assert.True(File.Exists(System.IO.Path.Combine(output, "genai_config.json")), "the quantized folder keeps genai_config.json");
        AssertGeneratesText(folders, output);
    }
}
