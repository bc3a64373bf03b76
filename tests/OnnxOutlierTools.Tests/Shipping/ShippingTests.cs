using OnnxOutlierTools.Tests.Cli;
using OnnxOutlierTools.Tests.Import;
using Xunit.Abstractions;

namespace OnnxOutlierTools.Tests.Shipping;

/// <summary>What each model-writing command writes goes through <see cref="ShippedModel.Require"/>: it loads and runs in
/// ONNX Runtime, passes the onnx checker where its opset allows, and keeps large weights in external data.
/// (convert --fp16 is covered in <see cref="Fp16ConversionTests"/>; quantize's outputs are to be added here.)</summary>
public sealed class ShippingTests(ITestOutputHelper output) : IDisposable
{
    private readonly TempFolder _temp = new("shipping");

    public static TheoryData<string, bool> Imports => new()
    {
        { "decomposed", false }, { "decomposed-past", false }, { "genai-gqa", false }, { "decomposed-past", true }, { "genai-gqa", true },
    };

    [Theory]
    [MemberData(nameof(Imports))]
    public void ImportLlama2c_Ships(string flavour, bool fp16)
    {
        string folder = _temp.Path($"{flavour}{(fp16 ? "-fp16" : "")}");
        var r = CliRunner.Run(["import-llama2c", Stories260K.CheckpointPath, "-o", folder, "--flavour", flavour, .. fp16 ? new[] { "--fp16" } : []]);
        Assert.True(r.ExitCode == 0, r.ToString());
        output.WriteLine(ShippedModel.Require(Path.Combine(folder, "model.onnx")).ToString());
    }

    [Theory]
    [InlineData("llama-torch-past", "--external-data")] // 1.2 MB, embedded as published
    [InlineData("llama-genai-gqa-fp32", null)]           // 4.3 MB in external data, kept so by default
    public void Convert_Ships(string fixture, string? layout)
    {
        string converted = _temp.Path($"{fixture}.onnx");
        var r = CliRunner.Run(["convert", Fixtures.Export(fixture, "model.onnx"), "-o", converted, .. layout is null ? Array.Empty<string>() : [layout]]);
        Assert.True(r.ExitCode == 0, r.ToString());
        // The builder fixture fails onnx 1.12's checker as published (OnnxCheckerTests.PublishedDefects); a lossless save keeps that.
        output.WriteLine(ShippedModel.Require(converted, checker: fixture != "llama-genai-gqa-fp32").ToString());
    }

    [Fact]
    public void Mitigate_Ships()
    {
        string model = RepositoryFiles.Path("onnx-models", "planted-llama-decomposed", "model.onnx");
        string folder = _temp.Path("mitigated");
        var r = CliRunner.Run("mitigate", model, "--text", Fixtures.Path("text", "tinystories-sample.txt"), "--seq-len", "64", "--max-tokens", "128",
            "--proof-windows", "1", "--no-compare", "--fold-norms", "--smooth", "0.5", "-o", folder);
        Assert.True(r.ExitCode == 0, r.ToString());
        output.WriteLine(ShippedModel.Require(Path.Combine(folder, "model.onnx")).ToString());
    }

    /// <summary>quantize's outputs: the QDQ models (opset 13+ QuantizeLinear/DequantizeLinear with axis), MatMulNBits
    /// (com.microsoft, the checker skips contrib domains' schemas) and the opset-21 blocked DequantizeLinear form.</summary>
    [Theory]
    [InlineData("w8a8-static", "matmulnbits")]
    [InlineData("w8a8-dynamic", "matmulnbits")]
    [InlineData("int4-rtn", "matmulnbits")]
    [InlineData("int4-rtn", "dq")]
    public void Quantize_Ships(string scheme, string int4Format)
    {
        string model = RepositoryFiles.Path("onnx-models", "planted-llama-decomposed", "model.onnx");
        string folder = _temp.Path($"quantized-{scheme}-{int4Format}");
        var r = CliRunner.Run("quantize", model, "--scheme", scheme, "--int4-format", int4Format, "--text", Fixtures.Path("text", "tinystories-sample.txt"),
            "--seq-len", "64", "--max-tokens", "128", "-o", folder);
        Assert.True(r.ExitCode == 0, r.ToString());
        output.WriteLine(ShippedModel.Require(Path.Combine(folder, "model.onnx")).ToString());
    }

    [Fact]
    public void LargeModelWithEmbeddedWeights_IsCaught()
    {
        // The helper itself: a >1 MiB model saved embedded must fail the external-data check.
        string embedded = _temp.Path("big-embedded.onnx");
        string fixture = Fixtures.Export("llama-genai-gqa-fp32", "model.onnx"); // 4.26 MB of weights in external data
        var r = CliRunner.Run("convert", fixture, "-o", embedded, "--embed");
        Assert.True(r.ExitCode == 0, r.ToString());
        Assert.ThrowsAny<Xunit.Sdk.XunitException>(() => ShippedModel.KeepsExternalDataWhenLarge(embedded));
        Assert.Contains("external data kept", ShippedModel.KeepsExternalDataWhenLarge(fixture));
    }

    public void Dispose() => _temp.Dispose();
}
