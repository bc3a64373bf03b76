using System.Diagnostics;
using OnnxOutlierTools.Import;
using OnnxOutlierTools.Structure.Recognition;
using OnnxOutlierTools.Tests.IO;

namespace OnnxOutlierTools.Tests.Structure;

/// <summary>Recognition grows linearly with the layer count (values every layer shares, like rotary cos/sin,
/// are walked once, and norms are deduplicated in linear time). Generous bounds, measured in CPU time so
/// that other tests running alongside do not decide them; in its own non-parallel collection.</summary>
[Collection(MemoryMeasurementCollection.Name)]
public class RecognitionScaleTests
{
    private static Ir.Model Decoder(int layers) => SyntheticDecoder.CreateBenchmarkModel(
        new DecoderConfig(dim: 4096, hiddenDim: 11008, layers: layers, heads: 32, kvHeads: 32, vocabSize: 32000, maxSeqLen: 2048, sharedClassifier: false), seed: 1);

    private static double CpuSeconds(Ir.Model model, int expectedBlocks)
    {
        double best = double.MaxValue;
        for (int i = 0; i < 3; i++)
        {
            var before = Process.GetCurrentProcess().TotalProcessorTime;
            var result = StructureRecognizer.Recognize(model);
            best = Math.Min(best, (Process.GetCurrentProcess().TotalProcessorTime - before).TotalSeconds);
            Assert.Equal(expectedBlocks, result.Structure!.Blocks.Count);
        }
        return Math.Max(best, 0.002);
    }

    [Fact]
    public void Recognize_SixteenTimesTheLayers_TakesAtMostFortyTimesLonger()
    {
        using var small = Decoder(48);
        using var large = Decoder(768);
        CpuSeconds(small, 48); // JIT
        double s = CpuSeconds(small, 48), l = CpuSeconds(large, 768);
        // Linear is 16x; the quadratic walks this replaces made it about 55x at this size.
        Assert.True(l < 40 * s, $"768 layers took {l:F3} s CPU, 48 layers {s:F3} s ({l / s:F1}x)");
    }

    [Fact]
    public void Recognize_7BShapedGraph_WellUnderASecond()
    {
        using var model = Decoder(32);
        StructureRecognizer.Recognize(model);
        var sw = Stopwatch.StartNew();
        Assert.Equal(32, StructureRecognizer.Recognize(model).Structure!.Blocks.Count);
        Assert.True(sw.Elapsed < TimeSpan.FromSeconds(1), $"took {sw.Elapsed}");
    }
}
