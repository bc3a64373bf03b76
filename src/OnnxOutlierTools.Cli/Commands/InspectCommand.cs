using System.CommandLine;
using OnnxOutlierTools.Inspection;
using OnnxOutlierTools.IO;

namespace OnnxOutlierTools.Cli.Commands;

/// <summary><c>inspect MODEL [--json]</c>: what a model contains, without reading tensor data.</summary>
public static class InspectCommand
{
    public static Command Create(CliContext context)
    {
        var model = new Argument<string>("MODEL")
        {
            Description = "The .onnx model file. Its external data files may be absent (they are reported as absent).",
        };
        var json = new Option<bool>("--json")
        {
            Description = "Write the summary as JSON (camelCase, stable property names) instead of text.",
        };
        var command = new Command("inspect",
            "Summarize a model: producer, opsets, inputs and outputs, node and op-type counts (nested graphs " +
            "included), initializers by data type, and external data files. Reads no tensor data.")
        {
            model,
            json,
        };
        command.SetAction(parseResult => context.Guard(parseResult,
            () => Execute(parseResult.GetValue(model)!, parseResult.GetValue(json), context.Out)));
        return command;
    }

    public static int Execute(string path, bool json, TextWriter stdout)
    {
        ModelSummary summary;
        using (var model = ModelReader.Load(path, new LoadOptions { RequireExternalData = false }))
            summary = ModelSummary.Create(model);
        // Rendered in full before anything is written, so a failure never leaves half a report.
        string text = json ? summary.ToJson() + Environment.NewLine : SummaryText.Render(summary, path);
        stdout.Write(text);
        return ErrorHandler.Success;
    }
}
