using OnnxOutlierTools.Mitigation.Smoothing;
using OnnxOutlierTools.Structure.Roles;
using OnnxOutlierTools.Tensors;

namespace OnnxOutlierTools.Tests.Mitigation;

public class SmoothQuantScaleTests
{
    [Fact]
    public void Scale_IsTheFormula_WithClampedMaxima()
    {
        double[] x = [100, 1, 0, 4], w = [0.5, 2, 1, 0];
        var s = SmoothQuantScale.Compute(x, w, 0.5);
        Assert.Equal(Math.Sqrt(100) / Math.Sqrt(0.5), s[0], 12);
        Assert.Equal(1 / Math.Sqrt(2), s[1], 12);
        Assert.Equal(Math.Sqrt(1e-5), s[2], 12);
        Assert.Equal(2 / Math.Sqrt(1e-5), s[3], 12);
        // alpha 1: all of the activation range moves into the weights; alpha 0: none of it.
        Assert.Equal(100, SmoothQuantScale.Compute(x, w, 1)[0], 12);
        Assert.Equal(2, SmoothQuantScale.Compute(x, w, 0)[0], 12);
        Assert.Throws<ArgumentOutOfRangeException>(() => SmoothQuantScale.Compute(x, w, 1.5));
    }

    [Theory]
    [InlineData(WeightLayout.InOut)]
    [InlineData(WeightLayout.OutIn)]
    public void InputChannelAbsMax_FollowsTheLayout(WeightLayout layout)
    {
        float[] values = [1, -7, 3, 2, -0.5f, 4]; // [2, 3]
        var weight = ArrayTensor.Create<Half>(values.Select(v => (Half)v).ToArray(), 2, 3);
        var max = SmoothQuantScale.InputChannelAbsMax(weight, layout);
        Assert.Equal(layout == WeightLayout.InOut ? [7.0, 4.0] : [2.0, 7.0, 4.0], max);
    }
}
