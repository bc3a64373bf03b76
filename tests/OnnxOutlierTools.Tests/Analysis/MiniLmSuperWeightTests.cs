using OnnxOutlierTools.Analysis;
using OnnxOutlierTools.IO;
using OnnxOutlierTools.Probes;
using OnnxOutlierTools.Structure.Recognition;
using OnnxOutlierTools.Structure.Roles;
using Xunit.Abstractions;

namespace OnnxOutlierTools.Tests.Analysis;

/// <summary>The super-weight lookup on real trained weights: all-MiniLM-L6-v2's block 0 fc2, whose W[856, 99] = 7.91 is
/// the largest |w| of the matrix, ~285x its median (measured with ORT, SCIENCE.md 4). The statistics are hand-made to
/// the measured shape (fc2-input neuron 856 at ~24 on [CLS], channel 99 at ~220 in the FFN residual sum of block 0).</summary>
public class MiniLmSuperWeightTests(ITestOutputHelper output)
{
    [Fact]
    public void Analyze_MiniLmBlock0_SuperWeightIsFc2Row856Column99()
    {
        using var model = ModelReader.Load(MiniLm.ModelPath);
        var recognized = StructureRecognizer.Recognize(model);
        Assert.True(recognized.Recognized, recognized.Message);
        var structure = recognized.Structure!;
        Assert.Equal(NormPlacement.PostNorm, structure.Placement);
        var block0 = structure.Blocks[0];
        int hidden = (int)block0.Ffn!.Down.OutFeatures, inner = (int)block0.Ffn.Down.InFeatures;
        Assert.Equal((384, 1536), (hidden, inner));

        var s = new SyntheticStatistics();
        s.Add("embedding", ProbeKind.Embedding, null, s.Noise(hidden, 0.5), structure.Embedding!.Output.Name);
        s.Add("block0.residual-sum.attention", ProbeKind.ResidualSum, 0, s.Noise(hidden, 0.5));
        s.Add("block0.ffn-input", ProbeKind.FfnInput, 0, s.Noise(hidden, 0.5), block0.FfnNorm!.Output.Name);
        var y4 = s.Noise(inner, 0.1);
        y4[0, 0, 856] = 24; y4[1, 0, 856] = 23.5;
        s.Add("block0.down-input", ProbeKind.DownInput, 0, y4, block0.Ffn.DownInput.Name);
        var sum = s.Noise(hidden, 0.5);
        sum[0, 0, 99] = 220; sum[1, 0, 99] = 218;
        s.Add("block0.residual-sum.ffn", ProbeKind.ResidualSum, 0, sum);
        s.Add("block0.residual", ProbeKind.Residual, 0, s.Noise(hidden, 0.5), block0.ResidualOut.Value!.Name);
        var result = OutlierAnalyzer.Analyze(s.Build(), structure);

        var ma = Assert.Single(result.MassiveActivations);
        Assert.Equal((99, MassiveActivationRule.Relative), (ma.Channel, ma.Rule)); // 220 is ~500x its median, not 1000x
        Assert.Equal((BirthPlace.Ffn, "block0.residual-sum.ffn"), (ma.Birth.Place, ma.Birth.FirstPoint.Id));
        var sw = ma.Birth.SuperWeight!;
        output.WriteLine($"super weight W[{sw.Row}, {sw.Column}] = {sw.Weight:F4}, median |w| {sw.MedianAbsWeight:E3}, ratio {sw.Ratio:F1}");
        Assert.Equal((0, 856, 99, block0.Ffn.Down.Weight.Name), (sw.Block, sw.Row, sw.Column, sw.Tensor));
        Assert.Equal(7.91, sw.Weight, 0.01);
        Assert.InRange(sw.Ratio, 270, 300);
        Assert.True(sw.LargestInMatrix);
        Assert.Equal(24 * sw.Weight, ma.Birth.Terms[0].Term, 1e-3);
    }
}
