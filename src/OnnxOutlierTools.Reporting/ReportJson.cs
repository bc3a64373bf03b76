namespace OnnxOutlierTools.Reporting;

public static class ReportJson
{
    public const int CurrentSchemaVersion = 1;
}
