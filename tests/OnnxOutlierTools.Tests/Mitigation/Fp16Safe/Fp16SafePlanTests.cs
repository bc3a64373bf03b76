using OnnxOutlierTools.IO;
using OnnxOutlierTools.Mitigation;
using OnnxOutlierTools.Mitigation.Fp16Safe;
using OnnxOutlierTools.Probes;
using OnnxOutlierTools.Tests.Analysis;
using OnnxOutlierTools.Tests.Mitigation.Measurement;

namespace OnnxOutlierTools.Tests.Mitigation.Fp16Safe;

/// <summary>The fp16-safe plan on real structures with hand-made statistics: FFN forms it cannot rescale exactly are
/// refused with the reason, statistics of another model are bad input.</summary>
public class Fp16SafePlanTests
{
    [Fact]
    public void Plan_GeluMlp_IsRefusedBecauseGeluIsNotHomogeneous()
    {
        // GPT-2 (torch.onnx, tanh GeLU, MLP width 16): act(2^-k x) != 2^-k act(x), so fc1 cannot take the scale.
        using var model = ModelReader.Load(Fixtures.Export("gpt2-torch-nopast", "GPT2Model.onnx"));
        var structure = CalibratedModel.Recognize(model);
        var ffn = structure.Blocks[0].Ffn!;
        var s = new SyntheticStatistics();
        var x = s.Noise((int)ffn.Down.InFeatures, 0.1);
        x[0, 0, 3] = 1e5;
        s.Add("block0.down-input", ProbeKind.DownInput, 0, x);
        var plan = Fp16SafePlan.Create(structure, s.Build(), new Fp16SafeSettings());
        Assert.Empty(plan.Rescales);
        var refusal = Assert.Single(plan.Refusals);
        Assert.Equal((Fp16SafePlan.UpDownRule, "block0.down-input"), (refusal.Rule, refusal.Point));
        Assert.Contains("act(2^-k x) != 2^-k act(x)", refusal.Reason);
        Assert.Equal(1e5, refusal.MaxAbs, 1);
    }

    [Fact]
    public void Plan_StatisticsOfAnotherWidth_IsBadInput()
    {
        using var model = ModelReader.Load(CalibratedModel.Planted);
        var structure = CalibratedModel.Recognize(model);
        var s = new SyntheticStatistics();
        var x = s.Noise(10, 0.1);
        x[0, 0, 3] = 1e5;
        s.Add("block1.down-input", ProbeKind.DownInput, 1, x);
        var e = Assert.Throws<MitigationInputException>(() => Fp16SafePlan.Create(structure, s.Build(), new Fp16SafeSettings()));
        Assert.Contains("statistics are of another model", e.Message);
    }

    [Fact]
    public void Plan_InfiniteInTheStatistics_AsksForFloat32Calibration()
    {
        using var model = ModelReader.Load(CalibratedModel.Planted);
        var structure = CalibratedModel.Recognize(model);
        var s = new SyntheticStatistics();
        var x = s.Noise((int)structure.Blocks[1].Ffn!.Down.InFeatures, 0.1);
        x[0, 0, 172] = double.PositiveInfinity;
        s.Add("block1.down-input", ProbeKind.DownInput, 1, x);
        var refusal = Assert.Single(Fp16SafePlan.Create(structure, s.Build(), new Fp16SafeSettings()).Refusals);
        Assert.Contains("calibrate a float32 copy", refusal.Reason);
    }
}
