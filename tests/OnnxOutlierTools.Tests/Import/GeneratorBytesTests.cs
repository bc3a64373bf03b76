using System.Security.Cryptography;
using OnnxOutlierTools.Import;
using OnnxOutlierTools.IO;

namespace OnnxOutlierTools.Tests.Import;

/// <summary>The generators write exactly the bytes they wrote before they were moved onto
/// <see cref="Ir.GraphEditor"/> (SHA-256 of the embedded save, pinned from the build before the move):
/// node names, output names, attribute order and value_info entries all unchanged.</summary>
public sealed class GeneratorBytesTests : IDisposable
{
    private readonly TempFolder _temp = new("generator-bytes");

    // The GQA flavours were re-pinned when the generator began writing GroupQueryAttention's local_window_size
    // (-1, the spec's default, as onnxruntime-genai's builder writes it; a window per layer for sliding-window
    // variants): that attribute is the only difference (the test below removes it and gets the old bytes), and
    // the move onto GraphEditor kept those bytes too.
    public static TheoryData<string, string> Pinned => new()
    {
        { "synthetic-graph", "234992cfc74ee9731f2323a0e38b71c1221b366cae27f46c22c646d9cba01589" },
        { "tiny-llama-decomposed", "2248db27f6090b46c4c5cc326d21bd88a4537571df4344d94aeaf00313ec12fa" },
        { "tiny-llama-decomposed-past", "af41ac5397418bdd58267b981729673a43ab3c1971660e5799bdb63fb1987f0c" },
        { "tiny-llama-genai-gqa-fused", "0f92dc7a41f2554482b1e3c6e2e15d0b0a7ee64392a90f89103920c8a18b1157" },
        { "tiny-llama-genai-gqa-separate", "be25c5e8cf37e646c6368ff44df52f1582c8812f5a3e32220b01304687ae16b8" },
    };

    [Theory]
    [MemberData(nameof(Pinned))]
    public void Generate_AfterTheMoveOntoGraphEditor_WritesTheSameBytes(string generator, string sha256)
    {
        using var model = generator switch
        {
            "synthetic-graph" => SyntheticGraph.Create(40, largeTensorBytes: 4096),
            "tiny-llama-decomposed" => Tiny(LlamaOnnxFlavour.Decomposed),
            "tiny-llama-decomposed-past" => Tiny(LlamaOnnxFlavour.DecomposedWithPast),
            "tiny-llama-genai-gqa-fused" => Tiny(LlamaOnnxFlavour.GenAiGqa, GqaRotary.Fused),
            _ => Tiny(LlamaOnnxFlavour.GenAiGqa, GqaRotary.Separate),
        };
        string path = _temp.Path(generator + ".onnx");
        ModelWriter.Save(model, path, new SaveOptions { Layout = TensorLayout.Embed, Durable = false });
        string actual = Convert.ToHexStringLower(SHA256.HashData(File.ReadAllBytes(path)));
        Assert.True(sha256 == actual, $"{generator}: sha256 {actual}, pinned {sha256}");
    }

    [Theory]
    [InlineData(GqaRotary.Fused, "452f5a222faee6a5a1c7f387e10ac7d7005028d8cf095dde1340e1cb3262b8b0")]
    [InlineData(GqaRotary.Separate, "7c3aed907b3c4600bfcaf3285ccf7a8c46b5aa5f2f15c86a0f846b274651c441")]
    public void GqaWithoutLocalWindowSize_WritesTheBytesPinnedBeforeTheAttribute(GqaRotary rotary, string before)
    {
        using var model = Tiny(LlamaOnnxFlavour.GenAiGqa, rotary);
        var gqa = model.Graph.Nodes.Where(n => n.OpType == "GroupQueryAttention").ToList();
        Assert.NotEmpty(gqa);
        foreach (var node in gqa) Assert.True(node.RemoveAttribute("local_window_size"));
        string path = _temp.Path($"gqa-{rotary}.onnx");
        ModelWriter.Save(model, path, new SaveOptions { Layout = TensorLayout.Embed, Durable = false });
        Assert.Equal(before, Convert.ToHexStringLower(SHA256.HashData(File.ReadAllBytes(path))));
    }

    private static Ir.Model Tiny(LlamaOnnxFlavour flavour, GqaRotary rotary = GqaRotary.Auto) =>
        SyntheticDecoder.CreateModel(SyntheticDecoder.TinyConfig, SyntheticDecoder.TinySeed, new LlamaOnnxOptions { Flavour = flavour, GqaRotary = rotary });

    public void Dispose() => _temp.Dispose();
}
