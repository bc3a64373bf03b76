using System.Diagnostics;
using OnnxOutlierTools.Import;
using OnnxOutlierTools.Structure.Recognition;
using Xunit.Abstractions;

namespace OnnxOutlierTools.Tests.Structure;

/// <summary>Recognition of a 7B-shaped decoder (32 layers, Llama-2-7B's heads: 32 query and 32 KV heads) stays under a
/// second, residual-stream fallback included. Recognition cost follows the node count, not the widths, so the graph
/// keeps every node of the 7B export at a small width (the weights of a real 7B would not fit a test machine).</summary>
public class RecognitionSpeedTests(ITestOutputHelper output)
{
    [Theory]
    [InlineData(LlamaOnnxFlavour.DecomposedWithPast)]
    [InlineData(LlamaOnnxFlavour.GenAiGqa)]
    public void Recognize_32Layer7BShapedGraph_UnderOneSecond(LlamaOnnxFlavour flavour)
    {
        var config = new DecoderConfig(dim: 128, hiddenDim: 344, layers: 32, heads: 32, kvHeads: 32, vocabSize: 320, maxSeqLen: 64);
        using var model = SyntheticDecoder.CreateModel(config, seed: 7, new LlamaOnnxOptions { Flavour = flavour });
        StructureRecognizer.Recognize(model); // JIT warm-up
        var clock = Stopwatch.StartNew();
        var result = StructureRecognizer.Recognize(model);
        clock.Stop();
        output.WriteLine($"{flavour}: {model.Graph.Nodes.Count} nodes, {clock.Elapsed.TotalMilliseconds:F0} ms");
        Assert.True(result.Recognized, result.Message);
        Assert.Equal(32, result.Structure!.Blocks.Count);
        Assert.True(clock.Elapsed < TimeSpan.FromSeconds(1), $"recognition took {clock.Elapsed.TotalMilliseconds:F0} ms");
    }
}
