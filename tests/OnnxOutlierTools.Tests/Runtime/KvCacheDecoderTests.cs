using OnnxOutlierTools.IO;
using OnnxOutlierTools.Ir;
using OnnxOutlierTools.Runtime;
using OnnxOutlierTools.Tensors;

namespace OnnxOutlierTools.Tests.Runtime;

/// <summary>The KV-cache decoder on a real torch export with past: a prompt decoded in two steps through
/// the cache gives the logits of the prompt decoded at once; misuse is refused with a clear message.</summary>
public sealed class KvCacheDecoderTests : IDisposable
{
    private readonly TempFolder _temp = new("kv-decoder");
    private static readonly string TorchPast = Fixtures.Export("llama-torch-past", "model.onnx");

    [Fact]
    public void Run_PromptInTwoStepsThroughTheCache_MatchesThePromptAtOnce()
    {
        using var decoder = new KvCacheDecoder(TorchPast);
        Assert.True(decoder.Layers > 0 && decoder.HasPositionIds);
        int[] prompt = [3, 17, 42, 99];
        var whole = decoder.Run(prompt);
        var first = decoder.Run(prompt[..3]);
        var second = decoder.Run(prompt[3..], first.Present);

        Assert.Equal(4, whole.Present!.Length);
        Assert.Equal(4, second.Present!.Length);
        double diff = whole.Logits[3].Zip(second.Logits[0], (a, b) => Math.Abs((double)a - b)).Max();
        Assert.True(diff < 1e-4, $"max |diff| {diff}");
    }

    [Fact]
    public void Open_ModelWithoutInputIdsOrLogits_IsRefusedNamingTheInputs()
    {
        var b = new GraphBuilder();
        var x = b.Input("x", TensorDataType.Float, 2);
        b.Output(b.Op("Relu", x), TensorDataType.Float, 2);
        using var model = b.ToModel();
        string path = _temp.Path("relu.onnx");
        ModelWriter.Save(model, path, new SaveOptions { Durable = false });
        var e = Assert.Throws<RuntimeSetupException>(() => new KvCacheDecoder(path));
        Assert.Contains("not a decoder with input_ids and logits (inputs: x)", e.Message);
    }

    [Fact]
    public void Run_NoTokensOrACacheOfAnotherDepth_IsRefused()
    {
        using var decoder = new KvCacheDecoder(TorchPast);
        Assert.Throws<ArgumentException>(() => decoder.Run([]));
        var wrong = KvCache.Empty(decoder.Layers + 1, decoder.KvHeads, decoder.HeadSize);
        Assert.Contains("the cache holds", Assert.Throws<ArgumentException>(() => decoder.Run([1], wrong)).Message);
    }

    public void Dispose() => _temp.Dispose();
}
