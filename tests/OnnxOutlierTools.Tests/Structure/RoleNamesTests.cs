using OnnxOutlierTools.Structure.Roles;

namespace OnnxOutlierTools.Tests.Structure;

/// <summary>Every value of the role enums the reports print has its own name in <see cref="RoleNames"/> (one place, no
/// inline mapping), and the names are the ones the layers JSON has always printed.</summary>
public class RoleNamesTests
{
    private static void AllNamed<T>(Func<T, string> name, params string[] expected) where T : struct, Enum
    {
        var names = Enum.GetValues<T>().Select(name).ToList();
        Assert.Equal(expected, names);
        Assert.Equal(names.Count, names.Distinct().Count());
    }

    [Fact]
    public void ReportedEnums_HaveDistinctStableNames()
    {
        AllNamed<NormPlacement>(p => p.Name(), "pre-norm", "post-norm");
        AllNamed<WeightLayout>(l => l.Name(), "in,out", "out,in");
        AllNamed<MoeForm>(f => f.Name(), "fused", "decomposed");
        AllNamed<NormKind>(k => k.Name(), "layer", "rms");
        AllNamed<StateKind>(k => k.Name(), "conv", "recurrent", "key", "value");
        AllNamed<ModelArchitecture>(a => a.Name(), "encoder", "decoder", "encoder-decoder");
        AllNamed<BlockKind>(k => k.Name(), "attention", "linear-attention", "ssm", "conv", "unknown");
    }
}
