using Google.Protobuf;
using Onnx.Protobuf;

namespace OnnxOutlierTools.Tests.Cli;

/// <summary>Strings in a model file are the file author's: in inspect's text report they may not
/// print lines of their own (a forged <c>ir: 999</c>) or reach the terminal as escape sequences.</summary>
public class HostileNamesTests
{
    private const string Forge = "\nir:        999\n\u001b[2J\r";
    private const string Escaped = "\\nir:        999\\n\\e[2J\\r";

    [Fact]
    public void InspectText_NamesWithLineBreaksAndEscapes_StayOnTheirLineEscaped()
    {
        using var temp = new TempFolder("hostile");
        string model = WriteHostileModel(temp);

        var result = CliRunner.Run("inspect", model);

        Assert.True(result.ExitCode == 0, result.ToString());
        string[] lines = result.Stdout.Split('\n');
        Assert.Equal(["ir:        8"], lines.Where(l => l.StartsWith("ir:", StringComparison.Ordinal)));
        Assert.DoesNotContain('\u001b', result.Stdout);
        Assert.DoesNotContain('\r', result.Stdout);
        // Each hostile field shows up, escaped, on the line that belongs to it.
        foreach (string field in new[] { "producer", "version", "domain.x", "input", "output", "dim", "Op", "Node", "branch", "loc" })
            Assert.Contains(lines, l => l.Contains(field + Escaped, StringComparison.Ordinal));
        Assert.Contains(lines, l => l.StartsWith("producer:  producer" + Escaped + " version" + Escaped, StringComparison.Ordinal));
        Assert.Contains(lines, l => l.StartsWith("  loc" + Escaped + "  ABSENT", StringComparison.Ordinal));
    }

    private static string WriteHostileModel(TempFolder temp)
    {
        var branch = new GraphProto { Name = "branch" + Forge };
        branch.Node.Add(new NodeProto { OpType = "Identity", Input = { "x" }, Output = { "b" } });
        branch.Output.Add(new ValueInfoProto { Name = "b" });
        var graph = new GraphProto { Name = "main" };
        graph.Input.Add(Tensor("input" + Forge, "dim" + Forge));
        graph.Input.Add(Tensor("c", "n"));
        graph.Output.Add(Tensor("output" + Forge, "n"));
        graph.Node.Add(new NodeProto { OpType = "Op" + Forge, Domain = "domain.x" + Forge, Input = { "input" + Forge }, Output = { "y" } });
        graph.Node.Add(new NodeProto
        {
            OpType = "If", Name = "Node" + Forge, Input = { "c" }, Output = { "output" + Forge },
            Attribute =
            {
                new AttributeProto { Name = "then_branch", Type = AttributeProto.Types.AttributeType.Graph, G = branch },
                new AttributeProto { Name = "else_branch", Type = AttributeProto.Types.AttributeType.Graph, G = branch },
            },
        });
        var weight = new TensorProto { Name = "w", DataType = (int)TensorProto.Types.DataType.Float, Dims = { 4 }, DataLocation = TensorProto.Types.DataLocation.External };
        weight.ExternalData.Add(new StringStringEntryProto { Key = "location", Value = "loc" + Forge });
        weight.ExternalData.Add(new StringStringEntryProto { Key = "length", Value = "16" });
        graph.Initializer.Add(weight);
        var proto = new ModelProto
        {
            IrVersion = 8, ProducerName = "producer" + Forge, ProducerVersion = "version" + Forge, Graph = graph,
            OpsetImport = { new OperatorSetIdProto { Domain = "", Version = 17 }, new OperatorSetIdProto { Domain = "domain.x" + Forge, Version = 1 } },
        };
        string path = temp.Path("hostile.onnx");
        File.WriteAllBytes(path, proto.ToByteArray());
        return path;
    }

    private static ValueInfoProto Tensor(string name, string dim) => new()
    {
        Name = name,
        Type = new TypeProto
        {
            TensorType = new TypeProto.Types.Tensor
            {
                ElemType = (int)TensorProto.Types.DataType.Float,
                Shape = new TensorShapeProto { Dim = { new TensorShapeProto.Types.Dimension { DimParam = dim } } },
            },
        },
    };
}
